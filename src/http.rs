//! The HTTP layer below authentication: the rustls clients with their timeouts (`timeouts:`), one retry
//! policy (pure decision functions plus a thin loop), and plain bounded requests (the token endpoint and
//! discovery use these). The token-carrying [`crate::session::Session`] sits above [`crate::auth`] and
//! builds on this. Every failure text names the host and the limit that ran out ([`describe`]).

use std::future::Future;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;

use crate::error::{Error, Result};
use crate::job::{Job, TimeoutSettings};
use crate::progress::{Event, Reporter};
use crate::redact::redact_query;

mod failure;
use failure::tls_error;
pub use failure::{Failure, describe, failure_text};

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
    /// Smallest wait of any kind (`poll.min_interval`): backoff and `Retry-After` alike.
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

    /// The wait before retry number `attempt` (0-based), never below `min` nor above `max` (as the
    /// README promises for `poll.min_interval` / `max_interval`): the server's `Retry-After` clamped to
    /// those bounds, else exponential backoff with jitter above the floor ([`backoff_above`]).
    pub fn wait(&self, attempt: u32, retry_after: Option<Duration>, jitter: f64) -> Duration {
        let max = self.max.max(self.min);
        match retry_after {
            Some(d) => d.clamp(self.min, max),
            None => backoff_above(attempt, self.min.max(self.base.min(max)), max, jitter),
        }
    }
}

/// Exponential backoff that never goes below its floor: uniform in `[floor, min(cap, floor · 2^attempt)]`
/// (`jitter` in `[0, 1)` picks the point), so the first retry waits exactly `floor` and later ones spread
/// out without ever collapsing to zero the way full jitter does.
pub fn backoff_above(attempt: u32, floor: Duration, cap: Duration, jitter: f64) -> Duration {
    let cap = cap.max(floor);
    let ceiling = floor.saturating_mul(1u32.checked_shl(attempt.min(30)).unwrap_or(u32::MAX)).min(cap);
    floor + (ceiling - floor).mul_f64(jitter.clamp(0.0, 1.0))
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
/// What bounds a request, so a failure can say which limit ran out (and where: [`describe`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub connect: Duration,
    pub wait: Wait,
}

/// The second bound of a request, after the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// The whole request and its answer (`timeouts.request`): API requests.
    Answer(Duration),
    /// The longest silence (`timeouts.read_idle`): downloads, which may take hours in total.
    Data(Duration),
}

impl Limits {
    pub fn api(t: &TimeoutSettings) -> Self {
        Limits { connect: t.connect, wait: Wait::Answer(t.request) }
    }

    pub fn files(t: &TimeoutSettings) -> Self {
        Limits { connect: t.connect, wait: Wait::Data(t.read_idle) }
    }
}

/// The clients of a run: API requests are bounded as a whole ([`Limits::api`], set per request),
/// downloads by silence ([`Limits::files`], on the client): two pools, so neither bound leaks into the
/// other's requests.
#[derive(Debug, Clone)]
pub struct Clients {
    pub api: reqwest::Client,
    pub files: reqwest::Client,
    pub timeouts: TimeoutSettings,
}

impl Clients {
    pub fn new(job: &Job) -> Result<Self> {
        let files = builder(job)?.read_timeout(job.timeouts.read_idle);
        Ok(Clients {
            api: client(job)?,
            files: files.build().map_err(|e| Error::Failed(format!("cannot set up HTTPS: {e}")))?,
            timeouts: job.timeouts,
        })
    }
}

/// The API client: rustls (aws-lc-rs) with the system's roots plus `tls.ca_file`, no automatic redirects
/// (we follow them by hand), keep-alive, HTTP/2 where the server offers it, `timeouts.connect`. Each
/// request adds `timeouts.request` ([`plain_attempt`], the session).
pub fn client(job: &Job) -> Result<reqwest::Client> {
    builder(job)?.build().map_err(|e| Error::Failed(format!("cannot set up HTTPS: {e}")))
}

fn builder(job: &Job) -> Result<reqwest::ClientBuilder> {
    let mut b = reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(job.timeouts.connect)
        .pool_idle_timeout(Duration::from_secs(60));
    // Read and checked when the job was resolved; the file is not read again.
    if let Some(pem) = &job.tls.ca_pem {
        let certs =
            reqwest::Certificate::from_pem_bundle(pem).map_err(|e| Error::Usage(format!("tls.ca_file: {e}")))?;
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    Ok(b)
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

/// One plain request (no bearer token, no redirects), bounded by `timeouts.request`: a connection error,
/// a timeout or a retryable status is an [`Attempt::Retry`] (with the server's `Retry-After`), else the
/// status and the body, read up to `limit` bytes. For the token endpoint and discovery, which run before
/// a [`crate::session::Session`] can send.
pub async fn plain_attempt(
    rb: reqwest::RequestBuilder,
    limit: usize,
    t: &TimeoutSettings,
) -> Result<Attempt<(StatusCode, Bytes)>> {
    let limits = Limits::api(t);
    let resp = match rb.timeout(t.request).send().await {
        Ok(r) => r,
        Err(e) => return send_failed(&e, limits),
    };
    let status = resp.status();
    if is_retryable_status(status) {
        let retry_after = retry_after(resp.headers(), SystemTime::now());
        return Ok(Attempt::Retry { reason: format!("HTTP {}", status.as_u16()), retry_after });
    }
    let at = resp.url().clone();
    let url = redact_query(&at);
    match read_limited(resp, limit).await {
        Ok(body) => Ok(Attempt::Done((status, body))),
        Err(ReadError::TooLarge) => Err(Error::Failed(format!("{url}: response larger than {limit} bytes"))),
        Err(ReadError::Http(e)) => Ok(Attempt::Retry { reason: describe(&e.with_url(at), limits), retry_after: None }),
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
pub fn send_failed<T>(e: &reqwest::Error, limits: Limits) -> Result<Attempt<T>> {
    if matches!(tls_error(e), Some(rustls::Error::InvalidCertificate(_))) {
        return Err(Error::Failed(describe(e, limits)));
    }
    Ok(Attempt::Retry { reason: describe(e, limits), retry_after: None })
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

    fn policy(min_ms: u64, max_ms: u64) -> RetryPolicy {
        let (min, max) = (Duration::from_millis(min_ms), Duration::from_millis(max_ms));
        RetryPolicy { retries: 5, base: min.max(Duration::from_millis(10)), min, max }
    }

    #[test]
    fn retry_waits_never_go_below_poll_min_interval() {
        let p = policy(2_000, 300_000);
        // The first retry waits exactly min_interval, whatever the jitter (full jitter gave ~0 s here).
        for j in [0.0, 0.3, 0.999] {
            assert_eq!(p.wait(0, None, j), Duration::from_secs(2), "{j}");
        }
        assert_eq!(p.wait(1, None, 0.0), Duration::from_secs(2));
        assert_eq!(p.wait(1, None, 0.5), Duration::from_secs(3));
        assert_eq!(p.wait(3, None, 0.5), Duration::from_secs(9));
        assert_eq!(p.wait(3, None, 0.0), Duration::from_secs(2));
        assert_eq!(p.wait(30, None, 1.0), Duration::from_secs(300));
        for attempt in 0..40 {
            for j in [0.0, 0.25, 0.5, 0.75, 0.999_999] {
                let w = p.wait(attempt, None, j);
                assert!(w >= p.min && w <= p.max, "attempt {attempt} jitter {j}: {w:?}");
            }
        }
    }

    #[test]
    fn a_zero_min_interval_still_backs_off_from_the_floor_step() {
        // min_interval 0 is allowed: the first step is then the 10 ms base, never a busy loop.
        let p = policy(0, 50);
        assert_eq!(p.wait(0, None, 0.0), Duration::from_millis(10));
        assert_eq!(p.wait(2, None, 1.0), Duration::from_millis(40));
        assert_eq!(p.wait(9, None, 1.0), Duration::from_millis(50));
        assert_eq!(p.wait(0, Some(Duration::ZERO), 0.5), Duration::ZERO);
    }

    #[test]
    fn backoff_above_its_floor() {
        let (f, cap) = (Duration::from_secs(1), Duration::from_secs(60));
        assert_eq!(backoff_above(0, f, cap, 0.9), f);
        assert_eq!(backoff_above(2, f, cap, 0.0), f);
        assert_eq!(backoff_above(2, f, cap, 1.0), Duration::from_secs(4));
        assert_eq!(backoff_above(200, f, cap, 1.0), cap);
        // A cap below the floor: the floor wins (min_interval is a promise).
        assert_eq!(backoff_above(5, f, Duration::from_millis(10), 0.5), f);
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
