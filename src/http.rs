//! The HTTP layer below authentication: one rustls client, one retry policy (pure decision functions plus
//! a thin loop), and plain bounded requests (the token endpoint and discovery use these). The
//! token-carrying [`crate::session::Session`] sits above [`crate::auth`] and builds on this.

use std::future::Future;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;

use crate::error::{Error, Result};
use crate::job::Job;
use crate::progress::{Event, Reporter};
use crate::redact::redact_query;

pub const USER_AGENT: &str = concat!("oneup-bulk/", env!("CARGO_PKG_VERSION"));
/// Redirect hops followed for one request.
pub const MAX_REDIRECTS: usize = 5;
/// Largest body read into memory for a token, kick-off or status response (manifests included).
pub const MAX_SMALL_BODY: usize = 64 * 1024 * 1024;

/// How often and how long to retry a transient fault.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts after the first.
    pub retries: u32,
    /// First backoff step; doubles per attempt.
    pub base: Duration,
    /// Largest wait, for backoff and for a server's `Retry-After`.
    pub max: Duration,
    /// Smallest wait honoured for a `Retry-After`.
    pub min: Duration,
}

impl RetryPolicy {
    pub fn from_job(job: &Job) -> Self {
        RetryPolicy {
            retries: job.download.retries,
            base: job.poll.min_interval.max(Duration::from_millis(10)),
            max: job.poll.max_interval,
            min: job.poll.min_interval,
        }
    }

    /// The wait before retry number `attempt` (0-based): the server's `Retry-After` clamped to
    /// `[min, max]`, else exponential backoff with full jitter (`jitter` in `[0, 1)`).
    pub fn wait(&self, attempt: u32, retry_after: Option<Duration>, jitter: f64) -> Duration {
        match retry_after {
            Some(d) => d.clamp(self.min, self.max.max(self.min)),
            None => backoff(attempt, self.base, self.max, jitter),
        }
    }
}

/// Exponential backoff with full jitter: uniform in `[0, min(cap, base · 2^attempt))`, at least 1 ms.
pub fn backoff(attempt: u32, base: Duration, cap: Duration, jitter: f64) -> Duration {
    let ceiling = base.saturating_mul(1u32.checked_shl(attempt.min(30)).unwrap_or(u32::MAX)).min(cap);
    ceiling.mul_f64(jitter.clamp(0.0, 1.0)).max(Duration::from_millis(1))
}

/// `Retry-After` as delay-seconds or an HTTP-date (relative to `now`); `None` when absent or unparsable.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Statuses retried with backoff (DESIGN §1.4, issue 4). 401 is handled apart (one re-auth).
pub fn is_retryable_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 429 | 500 | 502 | 503 | 504)
}

/// Whether a response read whole (kick-off, status, DELETE, manifest pages) is retried, from its status,
/// its body and whether it carried `Retry-After`. 408 and 429 always are. A 500/502/503/504 is,
/// unless its body is an OperationOutcome with no `transient`/`throttled` issue and the server gave no
/// `Retry-After`: that is the Bulk Data IG's "the export failed", and no retry changes it (issue 18).
/// Any other 4xx/5xx is retried only when its OperationOutcome says `transient` or `throttled`.
pub fn is_retryable_reply(status: StatusCode, body: &[u8], has_retry_after: bool) -> bool {
    use crate::fhir::{OutcomeKind, outcome_kind};
    match status.as_u16() {
        408 | 429 => true,
        500 | 502 | 503 | 504 => has_retry_after || outcome_kind(body) != OutcomeKind::Permanent,
        s if s >= 400 => outcome_kind(body) == OutcomeKind::Transient,
        _ => false,
    }
}

/// Builds the one HTTP client: rustls (aws-lc-rs) with the system's roots plus `tls.ca_file`, no automatic
/// redirects (we follow them by hand), keep-alive, HTTP/2 where the server offers it.
pub fn client(job: &Job) -> Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(Duration::from_secs(300))
        .pool_idle_timeout(Duration::from_secs(60));
    // Read and checked when the job was resolved; the file is not read again.
    if let Some(pem) = &job.tls.ca_pem {
        let certs =
            reqwest::Certificate::from_pem_bundle(pem).map_err(|e| Error::Usage(format!("tls.ca_file: {e}")))?;
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    b.build().map_err(|e| Error::Failed(format!("cannot set up HTTPS: {e}")))
}

/// One attempt's outcome inside [`retrying`].
pub enum Attempt<T> {
    Done(T),
    /// Retry after the policy's wait (counts against the budget).
    Retry {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// Repeat at once without counting (after a token renewal).
    Again,
}

impl<T> Attempt<T> {
    /// A `Retry` or `Again` carried over to another result type (panics on `Done`).
    pub(crate) fn not_done<U>(self) -> Attempt<U> {
        match self {
            Attempt::Retry { reason, retry_after } => Attempt::Retry { reason, retry_after },
            Attempt::Again => Attempt::Again,
            Attempt::Done(_) => unreachable!("not_done is only called on Retry and Again"),
        }
    }
}

/// The retry loop: calls `f` until it is done, fails, or the budget is spent (then `Error::Transient`).
pub async fn retrying<T, F, Fut>(policy: &RetryPolicy, reporter: &dyn Reporter, what: &str, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Attempt<T>>>,
{
    let mut attempt = 0u32;
    let mut agains = 0u32;
    loop {
        match f().await? {
            Attempt::Done(t) => return Ok(t),
            Attempt::Again if agains < 3 => agains += 1,
            Attempt::Again => {
                return Err(Error::Failed(format!("{what}: the request kept asking for a new token")));
            }
            Attempt::Retry { reason, retry_after } => {
                if attempt >= policy.retries {
                    return Err(Error::Transient(format!("{what}: gave up after {} attempts: {reason}", attempt + 1)));
                }
                let wait = policy.wait(attempt, retry_after, fastrand::f64());
                attempt += 1;
                reporter.event(&Event::Retrying { what, attempt, of: policy.retries, wait, reason: &reason });
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// One plain request (no bearer token, no redirects): a connection error or a retryable status is an
/// [`Attempt::Retry`] (with the server's `Retry-After`), else the status and the body, read up to
/// `limit` bytes. For the token endpoint and discovery, which run before a [`Session`] can send.
pub async fn plain_attempt(rb: reqwest::RequestBuilder, limit: usize) -> Result<Attempt<(StatusCode, Bytes)>> {
    let resp = match rb.send().await {
        Ok(r) => r,
        Err(e) => return send_failed(&e),
    };
    let status = resp.status();
    if is_retryable_status(status) {
        let retry_after = retry_after(resp.headers(), SystemTime::now());
        return Ok(Attempt::Retry { reason: format!("HTTP {}", status.as_u16()), retry_after });
    }
    let url = redact_query(resp.url());
    match read_limited(resp, limit).await {
        Ok(body) => Ok(Attempt::Done((status, body))),
        Err(ReadError::TooLarge) => Err(Error::Failed(format!("{url}: response larger than {limit} bytes"))),
        Err(ReadError::Http(e)) => Ok(Attempt::Retry { reason: describe(&e), retry_after: None }),
    }
}

pub enum ReadError {
    TooLarge,
    Http(reqwest::Error),
}

/// Reads a body into memory, refusing one larger than `limit` (a hostile server cannot fill memory).
pub async fn read_limited(mut resp: reqwest::Response, limit: usize) -> std::result::Result<Bytes, ReadError> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(ReadError::TooLarge);
    }
    let mut buf = bytes::BytesMut::new();
    while let Some(chunk) = resp.chunk().await.map_err(ReadError::Http)? {
        if buf.len() + chunk.len() > limit {
            return Err(ReadError::TooLarge);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// A request that could not be sent, as a step of [`retrying`]: a certificate the client refused ends
/// the run at once (exit 1), since no retry changes a certificate; anything else is retried.
pub fn send_failed<T>(e: &reqwest::Error) -> Result<Attempt<T>> {
    if matches!(tls_error(e), Some(rustls::Error::InvalidCertificate(_))) {
        return Err(Error::Failed(describe(e)));
    }
    Ok(Attempt::Retry { reason: describe(e), retry_after: None })
}

/// The rustls error inside a request error, if TLS is what failed.
fn tls_error(e: &reqwest::Error) -> Option<&rustls::Error> {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        // An io::Error's source() skips the error it wraps, and the connector nests io::Errors, so
        // unwrap them by hand to reach the one rustls made.
        let mut node: &(dyn std::error::Error + 'static) = s;
        while let Some(inner) = node.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            node = inner;
        }
        if let Some(t) = node.downcast_ref::<rustls::Error>() {
            return Some(t);
        }
        source = s.source();
    }
    None
}

/// A reqwest error without the URL's query (signed URLs carry credentials in it). A TLS failure names
/// the host and port and the reason: `TLS handshake with HOST:PORT failed: invalid peer certificate: …`.
pub fn describe(e: &reqwest::Error) -> String {
    if let Some(t) = tls_error(e) {
        let peer = e.url().and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port_or_known_default()?)));
        let peer = peer.unwrap_or_else(|| "the server".into());
        return if e.is_connect() {
            format!("TLS handshake with {peer} failed: {t}")
        } else {
            format!("TLS error from {peer}: {t}")
        };
    }
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "connection cut while reading the body"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() { kind.to_string() } else { format!("{kind}: {detail}") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn retry_after_seconds_and_http_date() {
        let mut h = HeaderMap::new();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        h.insert("retry-after", HeaderValue::from_static("120"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(120)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        h.insert("retry-after", HeaderValue::from_str(&later).unwrap());
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(30)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        h.insert("retry-after", HeaderValue::from_str(&past).unwrap());
        assert_eq!(retry_after(&h, now), Some(Duration::ZERO));
        h.insert("retry-after", HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h, now), None);
    }

    #[test]
    fn retry_after_is_clamped_to_the_job_bounds() {
        let p = RetryPolicy {
            retries: 3,
            base: Duration::from_secs(1),
            min: Duration::from_secs(2),
            max: Duration::from_secs(300),
        };
        assert_eq!(p.wait(0, Some(Duration::from_secs(7200)), 0.5), Duration::from_secs(300));
        assert_eq!(p.wait(0, Some(Duration::ZERO), 0.5), Duration::from_secs(2));
        assert_eq!(p.wait(0, Some(Duration::from_secs(10)), 0.5), Duration::from_secs(10));
    }

    #[test]
    fn backoff_grows_then_caps_with_full_jitter() {
        let (b, cap) = (Duration::from_secs(1), Duration::from_secs(60));
        assert_eq!(backoff(0, b, cap, 0.999_999), Duration::from_secs(1).mul_f64(0.999_999));
        assert_eq!(backoff(3, b, cap, 0.5), Duration::from_secs(4));
        assert_eq!(backoff(20, b, cap, 0.5), Duration::from_secs(30));
        assert_eq!(backoff(200, b, cap, 1.0), cap);
        assert_eq!(backoff(2, b, cap, 0.0), Duration::from_millis(1));
    }

    #[test]
    fn a_failed_export_is_not_retried_but_a_temporary_fault_is() {
        let oo = |code: &str| format!(r#"{{"resourceType":"OperationOutcome","issue":[{{"code":"{code}"}}]}}"#);
        let status = |s| StatusCode::from_u16(s).unwrap();
        let failed = oo("exception");
        // The reference server's "File generation failed": a 500 with a non-transient outcome.
        assert!(!is_retryable_reply(status(500), failed.as_bytes(), false));
        assert!(!is_retryable_reply(status(503), oo("processing").as_bytes(), false));
        // …unless the server asks to come back later.
        assert!(is_retryable_reply(status(503), failed.as_bytes(), true));
        // A 5xx without an outcome (a proxy's page) or with a transient one stays retried.
        for s in [500, 502, 503, 504] {
            assert!(is_retryable_reply(status(s), b"<html>Bad Gateway</html>", false), "{s}");
            assert!(is_retryable_reply(status(s), b"", false), "{s}");
            assert!(is_retryable_reply(status(s), oo("transient").as_bytes(), false), "{s}");
        }
        // Rate limits always are; other errors only when the outcome says temporary.
        assert!(is_retryable_reply(status(429), failed.as_bytes(), false));
        assert!(is_retryable_reply(status(408), b"", false));
        assert!(is_retryable_reply(status(400), oo("throttled").as_bytes(), false));
        assert!(!is_retryable_reply(status(400), failed.as_bytes(), false));
        assert!(!is_retryable_reply(status(501), b"", false));
        assert!(!is_retryable_reply(status(200), oo("transient").as_bytes(), false));
    }

    #[test]
    fn retryable_statuses() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(is_retryable_status(StatusCode::from_u16(s).unwrap()), "{s}");
        }
        for s in [400, 401, 403, 404, 410, 422, 501] {
            assert!(!is_retryable_status(StatusCode::from_u16(s).unwrap()), "{s}");
        }
    }
}
