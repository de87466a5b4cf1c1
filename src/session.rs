//! The token-carrying session every FHIR request goes through: bearer tokens attached only where DESIGN
//! §1.6 allows, one token renewal on a 401, redirects followed by hand so a token never crosses to
//! another origin, and the shared retry policy of [`crate::http`] around each request.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use url::{Origin, Url};

use crate::auth::TokenSource;
use crate::error::{Error, Result};
use crate::fhir::outcome_text;
use crate::http::{
    Attempt, MAX_REDIRECTS, ReadError, RetryPolicy, client, describe, is_retryable_reply, is_retryable_status,
    read_limited, retry_after, retrying, send_failed,
};
use crate::job::Job;
use crate::progress::Reporter;
use crate::redact::{Secret, redact_query};

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
            Err(e) => return send_failed(&e),
        };
        if resp.status() == StatusCode::UNAUTHORIZED && sent.is_some() && !reauthed.swap(true, Ordering::SeqCst) {
            tracing::debug!(what = %req.what, "401: renewing the access token and repeating the request");
            self.tokens.invalidate(sent.as_ref()).await;
            return Ok(Attempt::Again);
        }
        Ok(Attempt::Done(resp))
    }

    /// Sends with the retry policy: retryable replies ([`is_retryable_reply`]: rate limits, 5xx that are
    /// not a failed export, transient OperationOutcomes) and connection errors are retried with backoff
    /// (honouring `Retry-After`); one 401 renews the token without counting as a retry. The body is read whole, up to `limit` bytes. Other statuses are returned to the caller.
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
            let wait = retry_after(&headers, SystemTime::now());
            if is_retryable_reply(status, &body, wait.is_some()) {
                return Ok(Attempt::Retry {
                    reason: format!("HTTP {} {}", status.as_u16(), outcome_text(&body)),
                    retry_after: wait,
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
