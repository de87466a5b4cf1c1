//! The HTTP layer every stage shares: one rustls client, one retry policy (pure decision functions plus a
//! thin loop), bearer tokens attached only where DESIGN §1.6 allows, and redirects followed by hand so a
//! token never crosses to another origin.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use url::{Origin, Url};

use crate::auth::TokenSource;
use crate::error::{Error, Result};
use crate::job::Job;
use crate::progress::{Event, Reporter};
use crate::redact::Secret;

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

/// True when a body is an OperationOutcome with an issue whose code is `transient` or `throttled`. (Other
/// sub-codes of transient, like `exception`, are used loosely by servers for permanent errors; a 5xx
/// carrying them is retried anyway by its status.)
pub fn is_transient_outcome(body: &[u8]) -> bool {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return false;
    };
    v.get("resourceType").and_then(|t| t.as_str()) == Some("OperationOutcome")
        && v.get("issue").and_then(|i| i.as_array()).is_some_and(|issues| {
            issues.iter().any(|i| matches!(i.get("code").and_then(|c| c.as_str()), Some("transient" | "throttled")))
        })
}

/// The human text of an OperationOutcome (diagnostics, else details.text, else code), or the body's start.
pub fn outcome_text(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        if let Some(issues) = v.get("issue").and_then(|i| i.as_array()) {
            let texts: Vec<String> = issues
                .iter()
                .filter_map(|i| {
                    i.get("diagnostics")
                        .or_else(|| i.get("details").and_then(|d| d.get("text")))
                        .or_else(|| i.get("code"))
                        .and_then(|t| t.as_str())
                        .map(str::to_string)
                })
                .collect();
            if !texts.is_empty() {
                return texts.join("; ");
            }
        }
        if let Some(d) = v.get("error_description").or_else(|| v.get("error")).and_then(|d| d.as_str()) {
            return d.to_string();
        }
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]).trim().to_string();
    if text.is_empty() { "(empty body)".into() } else { text }
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
    if let Some(ca) = &job.tls.ca_file {
        let pem = std::fs::read(ca).map_err(|e| Error::io(ca, e))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| Error::Usage(format!("tls.ca_file {}: {e}", ca.display())))?;
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    b.build().map_err(|e| Error::Failed(format!("cannot set up HTTPS: {e}")))
}

/// A response read whole (bounded): token, kick-off, status, DELETE.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Where the bearer token may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenUse {
    Never,
    /// Only when the URL's origin is the FHIR server's or one of `auth.token_origins`, and never after a
    /// redirect to a different origin than the first URL's.
    AllowedOrigins,
}

/// A prepared request: method, URL, headers, body. Cloned for each attempt.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: Method,
    pub url: Url,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Option<Bytes>,
    pub token: TokenUse,
    /// What it is, for messages: "kick-off", "status", "Patient.ndjson".
    pub what: String,
}

impl Req {
    pub fn get(url: Url, what: impl Into<String>) -> Self {
        Req {
            method: Method::GET,
            url,
            headers: Vec::new(),
            body: None,
            token: TokenUse::AllowedOrigins,
            what: what.into(),
        }
    }

    pub fn header(mut self, name: HeaderName, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.push((name, v));
        }
        self
    }
}

/// The shared client, token source, policy and reporter of one run.
pub struct Session {
    pub client: reqwest::Client,
    pub tokens: TokenSource,
    pub policy: RetryPolicy,
    pub reporter: Arc<dyn Reporter>,
    /// Origins that may receive the token (the FHIR server's + `auth.token_origins`).
    pub token_origins: Vec<Origin>,
    /// The job's `headers:`, sent with every FHIR request.
    pub extra_headers: Vec<(HeaderName, HeaderValue)>,
}

impl Session {
    pub fn new(job: &Job, reporter: Arc<dyn Reporter>) -> Result<Self> {
        let client = client(job)?;
        let policy = RetryPolicy::from_job(job);
        let mut token_origins = vec![job.fhir_base.origin()];
        token_origins.extend(job.auth.token_origins.iter().cloned());
        let mut extra_headers = Vec::new();
        for (k, v) in &job.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| Error::Usage(format!("headers: {k:?} is not a valid header name")))?;
            let value = HeaderValue::from_str(v)
                .map_err(|_| Error::Usage(format!("headers: the value of {k} is not a valid header value")))?;
            extra_headers.push((name, value));
        }
        let tokens = TokenSource::new(job, client.clone(), policy.clone(), reporter.clone())?;
        Ok(Session { client, tokens, policy, reporter, token_origins, extra_headers })
    }

    fn token_allowed(&self, first: &Url, current: &Url) -> bool {
        let origin = current.origin();
        origin == first.origin() && self.token_origins.contains(&origin)
    }

    /// Sends a request once, following redirects by hand (GET/HEAD only), attaching the token only where
    /// allowed. Returns the final response and whether a token was sent with it.
    #[allow(clippy::type_complexity)]
    async fn send_once(
        &self,
        req: &Req,
    ) -> Result<std::result::Result<(reqwest::Response, Option<Secret>), reqwest::Error>> {
        // A token is fetched (or renewed) before the request; a refused secret ends here with exit 3.
        let token = if req.token == TokenUse::AllowedOrigins && self.token_allowed(&req.url, &req.url) {
            self.tokens.bearer().await?
        } else {
            None
        };
        let mut url = req.url.clone();
        let mut hops = 0;
        loop {
            let mut rb = self.client.request(req.method.clone(), url.clone());
            for (k, v) in self.extra_headers.iter().chain(req.headers.iter()) {
                rb = rb.header(k, v);
            }
            if let Some(b) = &req.body {
                rb = rb.body(b.clone());
            }
            let mut sent = None;
            if let Some(t) = token.as_ref().filter(|_| self.token_allowed(&req.url, &url)) {
                rb = rb.bearer_auth(t.expose());
                sent = Some(t.clone());
            }
            let resp = match rb.send().await {
                Ok(r) => r,
                Err(e) => return Ok(Err(e)),
            };
            let follow = resp.status().is_redirection()
                && matches!(req.method, Method::GET | Method::HEAD)
                && hops < MAX_REDIRECTS;
            let next = follow
                .then(|| resp.headers().get(reqwest::header::LOCATION))
                .flatten()
                .and_then(|l| l.to_str().ok())
                .and_then(|l| url.join(l).ok());
            match next {
                Some(n) if matches!(n.scheme(), "http" | "https") => {
                    tracing::debug!(from = %url, to = %redact_query(&n), "following redirect");
                    url = n;
                    hops += 1;
                }
                _ => return Ok(Ok((resp, sent))),
            }
        }
    }

    /// One try: a connection error is a retry, and the first 401 for a token we sent renews the token
    /// and repeats the request without counting as a retry.
    async fn try_once(&self, req: &Req, reauthed: &AtomicBool) -> Result<Attempt<reqwest::Response>> {
        let (resp, sent) = match self.send_once(req).await? {
            Ok(r) => r,
            Err(e) => return Ok(Attempt::Retry { reason: describe(&e), retry_after: None }),
        };
        if resp.status() == StatusCode::UNAUTHORIZED && sent.is_some() && !reauthed.swap(true, Ordering::SeqCst) {
            tracing::debug!(what = %req.what, "401: renewing the access token and repeating the request");
            self.tokens.invalidate(sent.as_ref()).await;
            return Ok(Attempt::Again);
        }
        Ok(Attempt::Done(resp))
    }

    /// Sends with the retry policy: retryable statuses, transient OperationOutcomes and connection errors
    /// are retried with backoff (honouring `Retry-After`); one 401 renews the token without counting as a
    /// retry. The body is read whole, up to `limit` bytes. Other statuses are returned to the caller.
    pub async fn send(&self, req: &Req, limit: usize) -> Result<Reply> {
        let reauthed = AtomicBool::new(false);
        retrying(&self.policy, &*self.reporter, &req.what, || async {
            let resp = match self.try_once(req, &reauthed).await? {
                Attempt::Done(r) => r,
                other => return Ok(other.not_done()),
            };
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = match read_limited(resp, limit).await {
                Ok(b) => b,
                Err(ReadError::TooLarge) => {
                    return Err(Error::Failed(format!("{}: response larger than {limit} bytes", req.what)));
                }
                Err(ReadError::Http(e)) => return Ok(Attempt::Retry { reason: describe(&e), retry_after: None }),
            };
            if is_retryable_status(status) || (status.as_u16() >= 400 && is_transient_outcome(&body)) {
                return Ok(Attempt::Retry {
                    reason: format!("HTTP {} {}", status.as_u16(), outcome_text(&body)),
                    retry_after: retry_after(&headers, SystemTime::now()),
                });
            }
            Ok(Attempt::Done(Reply { status, headers, body }))
        })
        .await
    }

    /// Like [`Session::send`] but returns the response with its body unread, for streaming downloads.
    /// Retryable statuses and connection errors are retried; other statuses are returned.
    pub async fn send_streaming(&self, req: &Req) -> Result<reqwest::Response> {
        let reauthed = AtomicBool::new(false);
        retrying(&self.policy, &*self.reporter, &req.what, || async {
            let resp = match self.try_once(req, &reauthed).await? {
                Attempt::Done(r) => r,
                other => return Ok(other.not_done()),
            };
            let status = resp.status();
            if is_retryable_status(status) {
                return Ok(Attempt::Retry {
                    reason: format!("HTTP {}", status.as_u16()),
                    retry_after: retry_after(resp.headers(), SystemTime::now()),
                });
            }
            Ok(Attempt::Done(resp))
        })
        .await
    }
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
    fn not_done<U>(self) -> Attempt<U> {
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
        Err(e) => return Ok(Attempt::Retry { reason: describe(&e), retry_after: None }),
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

/// A reqwest error without the URL's query (signed URLs carry credentials in it).
pub fn describe(e: &reqwest::Error) -> String {
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

/// A URL for logs: the query is dropped (it may hold a signature).
pub fn redact_query(url: &Url) -> String {
    let mut u = url.clone();
    if u.query().is_some() {
        u.set_query(Some("…"));
    }
    u.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn retryable_statuses() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(is_retryable_status(StatusCode::from_u16(s).unwrap()), "{s}");
        }
        for s in [400, 401, 403, 404, 410, 422, 501] {
            assert!(!is_retryable_status(StatusCode::from_u16(s).unwrap()), "{s}");
        }
    }

    #[test]
    fn transient_outcomes_and_their_text() {
        let oo = br#"{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"transient","diagnostics":"busy"}]}"#;
        assert!(is_transient_outcome(oo));
        assert_eq!(outcome_text(oo), "busy");
        let fatal = br#"{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"not-supported","details":{"text":"no _typeFilter"}}]}"#;
        assert!(!is_transient_outcome(fatal));
        assert_eq!(outcome_text(fatal), "no _typeFilter");
        assert_eq!(outcome_text(br#"{"error":"invalid_client","error_description":"bad secret"}"#), "bad secret");
        assert_eq!(outcome_text(b"<html>oops</html>"), "<html>oops</html>");
        assert!(!is_transient_outcome(b"not json"));
    }
}
