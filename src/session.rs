//! The token-carrying session every FHIR request goes through: bearer tokens attached only where DESIGN
//! §1.6 allows, one token renewal on a 401, redirects followed by hand so a token never crosses to
//! another origin, and the shared retry policy of [`crate::http`] around each request. 1up's header
//! credentials (`auth.method: client-headers`: `client_id`, `client_secret`, `x-oneup-user-id`) follow
//! a stricter rule than the token: the FHIR server's origin only, never `auth.token_origins`.
//! API requests are bounded as a whole (`timeouts.request`), downloads by silence (`timeouts.read_idle`).

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
    Attempt, Clients, Limits, MAX_REDIRECTS, ReadError, RetryPolicy, describe, is_retryable_reply, is_retryable_status,
    read_limited, retry_after, retrying, send_failed,
};
use crate::job::{Access, AuthMethod, Job};
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

/// The shared clients, token source, policy and reporter of one run.
pub struct Session {
    pub clients: Clients,
    pub tokens: TokenSource,
    pub policy: RetryPolicy,
    pub reporter: Arc<dyn Reporter>,
    /// Origins that may receive the token (the FHIR server's + `auth.token_origins`).
    pub token_origins: Vec<Origin>,
    /// The job's `headers:`, sent with every FHIR request.
    pub extra_headers: Vec<(HeaderName, HeaderValue)>,
    /// `auth.method: client-headers`: the credential headers, marked sensitive (never in `Debug`).
    client_headers: Vec<(HeaderName, HeaderValue)>,
    /// The only origin the client headers go to.
    fhir_origin: Origin,
    /// The job's access type (1up's documented answers are told apart from faults).
    pub access: Access,
}

/// The value 1up documents for `x-oneup-user-id` with client headers.
pub const ONEUP_USER_ID: &str = "client";

/// Whether credentials may go with a request to `current` that started at `first`: both on one of the
/// `allowed` origins, and no redirect has crossed to another origin.
pub fn credentials_allowed(first: &Url, current: &Url, allowed: &[Origin]) -> bool {
    let origin = current.origin();
    origin == first.origin() && allowed.contains(&origin)
}

/// 1up's header credentials for `job`, empty unless `auth.method: client-headers`.
fn client_headers(job: &Job) -> Result<Vec<(HeaderName, HeaderValue)>> {
    if job.auth.method != AuthMethod::ClientHeaders {
        return Ok(Vec::new());
    }
    let secret = job.auth.client_secret.as_ref().map(Secret::expose).unwrap_or("");
    let mut out = Vec::new();
    for (name, value) in
        [("client_id", job.auth.client_id.as_str()), ("client_secret", secret), ("x-oneup-user-id", ONEUP_USER_ID)]
    {
        let mut v = HeaderValue::from_str(value)
            .map_err(|_| Error::Usage(format!("auth: the {name} is not a valid header value (visible ASCII)")))?;
        v.set_sensitive(true);
        out.push((HeaderName::from_static(name), v));
    }
    Ok(out)
}

impl Session {
    pub fn new(job: &Job, reporter: Arc<dyn Reporter>) -> Result<Self> {
        let clients = Clients::new(job)?;
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
        let tokens = TokenSource::new(job, clients.api.clone(), policy.clone(), reporter.clone())?;
        Ok(Session {
            clients,
            tokens,
            policy,
            reporter,
            token_origins,
            extra_headers,
            client_headers: client_headers(job)?,
            fhir_origin: job.fhir_base.origin(),
            access: job.access,
        })
    }

    fn token_allowed(&self, first: &Url, current: &Url) -> bool {
        credentials_allowed(first, current, &self.token_origins)
    }

    /// The bounds of an API request (`streaming: false`) or a download.
    pub fn limits(&self, streaming: bool) -> Limits {
        if streaming { Limits::files(&self.clients.timeouts) } else { Limits::api(&self.clients.timeouts) }
    }

    /// Sends a request once, following redirects by hand (GET/HEAD only), attaching the token only where
    /// allowed. Returns the final response and whether a token was sent with it. A download
    /// (`streaming`) goes through the files client, bounded by silence; anything else is bounded whole.
    #[allow(clippy::type_complexity)]
    async fn send_once(
        &self,
        req: &Req,
        streaming: bool,
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
            let mut rb = if streaming {
                self.clients.files.request(req.method.clone(), url.clone())
            } else {
                self.clients.api.request(req.method.clone(), url.clone()).timeout(self.clients.timeouts.request)
            };
            for (k, v) in self.extra_headers.iter().chain(req.headers.iter()) {
                rb = rb.header(k, v);
            }
            if let Some(b) = &req.body {
                rb = rb.body(b.clone());
            }
            if req.token == TokenUse::AllowedOrigins
                && credentials_allowed(&req.url, &url, std::slice::from_ref(&self.fhir_origin))
            {
                for (k, v) in &self.client_headers {
                    rb = rb.header(k, v);
                }
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
    async fn try_once(&self, req: &Req, reauthed: &AtomicBool, streaming: bool) -> Result<Attempt<reqwest::Response>> {
        let (resp, sent) = match self.send_once(req, streaming).await? {
            Ok(r) => r,
            Err(e) => return send_failed(&e, self.limits(streaming)),
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
            let resp = match self.try_once(req, &reauthed, false).await? {
                Attempt::Done(r) => r,
                other => return Ok(other.not_done()),
            };
            let status = resp.status();
            let headers = resp.headers().clone();
            let url = resp.url().clone();
            let body = match read_limited(resp, limit).await {
                Ok(b) => b,
                Err(ReadError::TooLarge) => {
                    return Err(Error::Failed(format!("{}: response larger than {limit} bytes", req.what)));
                }
                Err(ReadError::Http(e)) => {
                    let reason = describe(&e.with_url(url), self.limits(false));
                    return Ok(Attempt::Retry { reason, retry_after: None });
                }
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
            let resp = match self.try_once(req, &reauthed, true).await? {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_stay_on_their_origins() {
        let u = |s: &str| Url::parse(s).unwrap();
        let fhir = [u("https://gw.example/v1/t/").origin()];
        let base = u("https://gw.example/v1/t/$export");
        assert!(credentials_allowed(&base, &u("https://gw.example/v1/t/$export-status/1"), &fhir));
        // A file host, or a redirect from the FHIR server to one, gets nothing.
        assert!(!credentials_allowed(&u("https://files.example/a"), &u("https://files.example/a"), &fhir));
        assert!(!credentials_allowed(&base, &u("https://files.example/a?sig=1"), &fhir));
        // Another port or scheme is another origin.
        assert!(!credentials_allowed(&base, &u("http://gw.example/v1/t/"), &fhir));
        assert!(!credentials_allowed(&u("https://gw.example:8443/x"), &u("https://gw.example:8443/x"), &fhir));
    }
}
