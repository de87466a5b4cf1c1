//! Access tokens: OAuth 2.0 client credentials (`client_secret_post`, `client_secret_basic`, SMART
//! Backend Services `private_key_jwt` signed by [`crate::jwt`]), the token
//! URL discovered from `.well-known/smart-configuration` when the job gives none, renewal before expiry
//! and after a 401, and the `scope` the server granted (for [`crate::scope`]'s warning when it is
//! narrower than the export asks for); for `access: patient-access`, the member's refresh token instead
//! ([`crate::patient::tokens::RefreshGrant`]). Tokens and secrets only ever live in [`Secret`]s.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::Mutex;
use url::Url;

use crate::error::{Error, Result};
use crate::http::{RetryPolicy, plain_attempt, retrying};
use crate::job::{Auth, AuthMethod, Job, TimeoutSettings};
use crate::jwt::SigningKey;
use crate::oauth::{expires_in_secs, token_error_text};
use crate::progress::{Event, Reporter};
use crate::redact::Secret;

/// Renew when less than this is left (or a fifth of the token's life, for short-lived tokens).
const RENEW_MARGIN: Duration = Duration::from_secs(60);
const MAX_TOKEN_BODY: usize = 1024 * 1024;

#[derive(Clone)]
struct Token {
    value: Secret,
    /// When to stop using it (already minus the renewal margin).
    renew_at: Option<Instant>,
}

pub struct TokenSource {
    client: reqwest::Client,
    auth: Auth,
    /// `private-key-jwt`: the key, parsed once.
    signing_key: Option<SigningKey>,
    token_url: Mutex<Option<Url>>,
    fhir_base: Url,
    policy: RetryPolicy,
    timeouts: TimeoutSettings,
    reporter: Arc<dyn Reporter>,
    current: Mutex<Option<Token>>,
    /// The `scope` of the last token response that had one.
    granted: std::sync::Mutex<Option<String>>,
    /// `access: patient-access`: tokens come from the member's saved refresh token instead.
    refresh: Option<crate::patient::tokens::RefreshGrant>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
    /// What the server granted, when it says (RFC 6749 §5.1: absent means what was asked for).
    #[serde(default)]
    scope: Option<String>,
}

/// When to renew a token that lives `expires_in` seconds: a minute early, or a fifth early when short.
pub fn renew_after(expires_in: Duration) -> Duration {
    let margin = RENEW_MARGIN.min(expires_in / 5);
    expires_in.saturating_sub(margin)
}

impl TokenSource {
    pub fn new(job: &Job, client: reqwest::Client, policy: RetryPolicy, reporter: Arc<dyn Reporter>) -> Result<Self> {
        let signing_key = match (&job.auth.method, &job.auth.private_key_pem) {
            (AuthMethod::PrivateKeyJwt, pem) => Some(
                SigningKey::from_pem(pem.as_ref().map(Secret::expose).unwrap_or(""), job.auth.algorithm)
                    .map_err(|e| Error::Usage(format!("auth.private_key_file: {e}")))?,
            ),
            _ => None,
        };
        Ok(TokenSource {
            client,
            auth: job.auth.clone(),
            signing_key,
            token_url: Mutex::new(job.auth.token_url.clone()),
            fhir_base: job.fhir_base.clone(),
            policy,
            timeouts: job.timeouts,
            reporter,
            current: Mutex::new(None),
            granted: std::sync::Mutex::new(None),
            refresh: job.patient.is_some().then(|| crate::patient::tokens::RefreshGrant::new(job)).transpose()?,
        })
    }

    /// The `scope` the token endpoint granted with the last token, if it said.
    pub fn granted_scope(&self) -> Option<String> {
        self.granted.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The bearer token to send, fetching or renewing it when needed; `None` with `auth.method: none`
    /// and `client-headers` (whose credentials go in headers, see [`crate::session`]).
    pub async fn bearer(&self) -> Result<Option<Secret>> {
        if !self.auth.method.uses_tokens() && self.refresh.is_none() {
            return Ok(None);
        }
        // Held across the fetch so concurrent downloads wait for one renewal instead of each asking.
        let mut cur = self.current.lock().await;
        if let Some(t) = &*cur {
            if t.renew_at.is_none_or(|at| Instant::now() < at) {
                return Ok(Some(t.value.clone()));
            }
            tracing::debug!("access token about to expire; renewing");
        }
        let t = self.fetch().await?;
        let v = t.value.clone();
        *cur = Some(t);
        Ok(Some(v))
    }

    /// Forgets `used` after a 401 so the next [`TokenSource::bearer`] fetches a new one (unless another
    /// task already renewed it).
    pub async fn invalidate(&self, used: Option<&Secret>) {
        let mut cur = self.current.lock().await;
        if cur.as_ref().map(|t| &t.value) == used {
            *cur = None;
        }
    }

    /// The token URL: the job's, or discovered from `[fhir_base]/.well-known/smart-configuration`.
    pub async fn token_url(&self) -> Result<Url> {
        let mut slot = self.token_url.lock().await;
        if let Some(u) = &*slot {
            return Ok(u.clone());
        }
        let u =
            discover_token_url(&self.client, &self.fhir_base, &self.policy, &self.timeouts, &*self.reporter).await?;
        *slot = Some(u.clone());
        Ok(u)
    }

    async fn fetch(&self) -> Result<Token> {
        if let Some(r) = &self.refresh {
            let (value, expires_in) = r.fetch(&self.client, &self.policy, &*self.reporter).await?;
            self.reporter.event(&Event::TokenObtained { expires_in: expires_in.map(|d| d.as_secs()) });
            return Ok(Token { value, renew_at: expires_in.map(|d| Instant::now() + renew_after(d)) });
        }
        let url = self.token_url().await?;
        let mut form: Vec<(&str, &str)> = vec![("grant_type", "client_credentials")];
        if let Some(s) = &self.auth.scope {
            form.push(("scope", s));
        }
        let secret = self.auth.client_secret.as_ref().map(Secret::expose).unwrap_or("");
        let mut assertion = None;
        match self.auth.method {
            AuthMethod::ClientSecretPost => {
                form.push(("client_id", &self.auth.client_id));
                form.push(("client_secret", secret));
            }
            AuthMethod::ClientSecretBasic => {}
            AuthMethod::PrivateKeyJwt => {
                let key = self.signing_key.as_ref().expect("parsed in TokenSource::new");
                let now = time::OffsetDateTime::now_utc().unix_timestamp();
                let jwt = crate::jwt::client_assertion(
                    key,
                    self.auth.key_id.as_deref(),
                    &self.auth.client_id,
                    url.as_str(),
                    now,
                    &crate::jwt::new_jti(),
                )
                .map_err(Error::Failed)?;
                assertion = Some(Secret::new(jwt));
            }
            AuthMethod::None | AuthMethod::ClientHeaders => {
                unreachable!("no token is fetched with auth.method none or client-headers")
            }
        }
        if let Some(a) = &assertion {
            form.push(("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"));
            form.push(("client_assertion", a.expose()));
        }
        let (status, body) = retrying(&self.policy, &*self.reporter, "token request", || {
            let mut rb = self.client.post(url.clone()).header("accept", "application/json").form(&form);
            if self.auth.method == AuthMethod::ClientSecretBasic {
                rb = rb.basic_auth(form_encode(&self.auth.client_id), Some(form_encode(secret)));
            }
            plain_attempt(rb, MAX_TOKEN_BODY, &self.timeouts)
        })
        .await?;
        if !status.is_success() {
            let detail = token_error_text(&body, status.as_u16());
            return Err(Error::AuthRefused { url: url.to_string(), detail });
        }
        let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|e| Error::AuthRefused {
            url: url.to_string(),
            detail: format!("the token response is not the JSON expected ({e})"),
        })?;
        if let Some(tt) = &parsed.token_type
            && !tt.eq_ignore_ascii_case("bearer")
        {
            return Err(Error::AuthRefused {
                url: url.to_string(),
                detail: format!("token_type is {tt:?}; only bearer tokens are supported"),
            });
        }
        if let Some(granted) = parsed.scope.filter(|s| !s.trim().is_empty()) {
            tracing::debug!(scope = %granted, "scope granted");
            *self.granted.lock().unwrap_or_else(|e| e.into_inner()) = Some(granted);
        }
        let expires_in = expires_in_secs(&parsed.expires_in);
        self.reporter.event(&Event::TokenObtained { expires_in });
        tracing::debug!(expires_in, "access token obtained");
        Ok(Token {
            value: Secret::new(parsed.access_token),
            renew_at: expires_in.map(|s| Instant::now() + renew_after(Duration::from_secs(s))),
        })
    }
}

/// HTTP Basic credentials for client_secret_basic are form-urlencoded first (RFC 6749 §2.3.1).
fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// GETs a small JSON document (discovery), with the retry policy; `Err(reason)` when the server answers
/// with a non-success status or something that is not JSON.
async fn get_json(
    client: &reqwest::Client,
    url: &Url,
    accept: &'static str,
    policy: &RetryPolicy,
    timeouts: &TimeoutSettings,
    reporter: &dyn Reporter,
) -> Result<std::result::Result<serde_json::Value, String>> {
    let (status, body) = retrying(policy, reporter, "SMART discovery", || {
        plain_attempt(client.get(url.clone()).header("accept", accept), 16 * MAX_TOKEN_BODY, timeouts)
    })
    .await?;
    if !status.is_success() {
        return Ok(Err(format!("{url}: HTTP {}", status.as_u16())));
    }
    Ok(serde_json::from_slice(&body).map_err(|e| format!("{url}: not JSON ({e})")))
}

/// The token endpoint from a CapabilityStatement's SMART `oauth-uris` security extension.
pub fn token_url_from_capability_statement(cs: &serde_json::Value) -> Option<String> {
    const OAUTH_URIS: &str = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris";
    cs["rest"].as_array()?.iter().find_map(|rest| {
        rest["security"]["extension"].as_array()?.iter().filter(|e| e["url"] == OAUTH_URIS).find_map(|e| {
            e["extension"].as_array()?.iter().find(|x| x["url"] == "token")?["valueUri"].as_str().map(str::to_string)
        })
    })
}

/// Finds the token URL: `token_endpoint` from `[base]/.well-known/smart-configuration`, else the
/// CapabilityStatement's `oauth-uris` extension (older servers).
pub async fn discover_token_url(
    client: &reqwest::Client,
    fhir_base: &Url,
    policy: &RetryPolicy,
    timeouts: &TimeoutSettings,
    reporter: &dyn Reporter,
) -> Result<Url> {
    let smart = fhir_base.join(".well-known/smart-configuration").expect("a relative path joins");
    let mut why = Vec::new();
    let mut found = None;
    match get_json(client, &smart, "application/json", policy, timeouts, reporter).await? {
        Ok(v) => match v["token_endpoint"].as_str() {
            Some(t) => found = Some(t.to_string()),
            None => why.push(format!("{smart}: no token_endpoint")),
        },
        Err(e) => why.push(e),
    }
    if found.is_none() {
        let meta = fhir_base.join("metadata").expect("a relative path joins");
        match get_json(client, &meta, "application/fhir+json", policy, timeouts, reporter).await? {
            Ok(cs) => match token_url_from_capability_statement(&cs) {
                Some(t) => found = Some(t),
                None => why.push(format!("{meta}: no oauth-uris token extension")),
            },
            Err(e) => why.push(e),
        }
    }
    let no_token_url = |detail: String| {
        Error::Usage(format!(
            "no auth.token_url in the job, and discovery found none ({detail}); add `token_url:` under `auth:`"
        ))
    };
    let endpoint = found.ok_or_else(|| no_token_url(why.join("; ")))?;
    let token_url = Url::parse(&endpoint).map_err(|e| no_token_url(format!("token endpoint {endpoint:?}: {e}")))?;
    crate::job::check_url_scheme(&token_url).map_err(no_token_url)?;
    tracing::debug!(%token_url, "token URL discovered");
    Ok(token_url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_leaves_a_margin() {
        assert_eq!(renew_after(Duration::from_secs(7200)), Duration::from_secs(7140));
        assert_eq!(renew_after(Duration::from_secs(300)), Duration::from_secs(240));
        assert_eq!(renew_after(Duration::from_secs(5)), Duration::from_secs(4));
        assert_eq!(renew_after(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn expires_in_number_or_string() {
        assert_eq!(expires_in_secs(&Some(serde_json::json!(3600))), Some(3600));
        assert_eq!(expires_in_secs(&Some(serde_json::json!("300"))), Some(300));
        assert_eq!(expires_in_secs(&Some(serde_json::json!(299.7))), Some(299));
        assert_eq!(expires_in_secs(&None), None);
    }

    #[test]
    fn token_url_from_the_capability_statement() {
        let cs = serde_json::json!({"resourceType": "CapabilityStatement", "rest": [{"mode": "server", "security": {"extension": [
            {"url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris", "extension": [
                {"url": "authorize", "valueUri": "https://a.example/authorize"},
                {"url": "token", "valueUri": "https://a.example/token"}]}]}}]});
        assert_eq!(token_url_from_capability_statement(&cs).as_deref(), Some("https://a.example/token"));
        assert_eq!(token_url_from_capability_statement(&serde_json::json!({"rest": [{}]})), None);
    }

    #[test]
    fn oauth_errors_are_readable() {
        assert_eq!(
            token_error_text(br#"{"error":"invalid_client","error_description":"Invalid client secret"}"#, 401),
            "HTTP 401 invalid_client: Invalid client secret"
        );
        assert_eq!(token_error_text(b"Forbidden", 403), "HTTP 403: Forbidden");
    }
}
