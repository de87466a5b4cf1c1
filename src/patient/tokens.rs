//! The plan's token endpoint for Patient Access: the `authorization_code` grant (with the PKCE
//! verifier) that `authorize` makes once, and the `refresh_token` grant that every `run` makes without
//! a person ([`RefreshGrant`], plugged into [`crate::auth::TokenSource`]). Client authentication is
//! the job's `auth.method`: the secret in the form (1up's way), HTTP Basic, a signed JWT, or none
//! (a public client, PKCE only).
//!
//! A plan that rotates refresh tokens makes the old one useless the moment it answers, so the new one
//! is saved (atomically) before the access token that came with it is used: a crash between the two
//! leaves a connection that still works.

use std::time::Duration;

use serde::Deserialize;
use tokio::sync::Mutex;
use url::Url;

use super::connection::{Connection, authorize_command};
use crate::error::{Error, Result};
use crate::http::{RetryPolicy, plain_attempt, retrying};
use crate::job::{Auth, AuthMethod, Job};
use crate::jwt::SigningKey;
use crate::oauth::{expires_in_secs, token_error_text};
use crate::progress::Reporter;
use crate::redact::Secret;
use crate::state::JobState;

const MAX_TOKEN_BODY: usize = 1024 * 1024;

/// A successful token response.
pub struct TokenReply {
    pub access_token: Secret,
    pub expires_in: Option<u64>,
    /// A new refresh token (on the first exchange, and on each refresh when the plan rotates them).
    pub refresh_token: Option<Secret>,
    /// SMART's launch context: the member's Patient id (with the `launch/patient` scope).
    pub patient: Option<String>,
    pub scope: Option<String>,
}

#[derive(Deserialize)]
struct RawReply {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    patient: Option<String>,
    #[serde(default)]
    scope: Option<String>,
}

/// How the client proves who it is, parsed once.
pub struct ClientAuth {
    auth: Auth,
    key: Option<SigningKey>,
    timeouts: crate::job::TimeoutSettings,
}

impl ClientAuth {
    pub fn new(job: &Job) -> Result<Self> {
        let key = match (&job.auth.method, &job.auth.private_key_pem) {
            (AuthMethod::PrivateKeyJwt, pem) => Some(
                SigningKey::from_pem(pem.as_ref().map(Secret::expose).unwrap_or(""), job.auth.algorithm)
                    .map_err(|e| Error::Usage(format!("auth.private_key_file: {e}")))?,
            ),
            _ => None,
        };
        Ok(ClientAuth { auth: job.auth.clone(), key, timeouts: job.timeouts })
    }

    /// POSTs a grant to `url` with the client's credentials. `Ok(Err(detail))` when the endpoint
    /// refuses it (the OAuth `error: error_description`, never anything we sent).
    pub async fn post(
        &self,
        client: &reqwest::Client,
        policy: &RetryPolicy,
        reporter: &dyn Reporter,
        url: &Url,
        grant: &[(&str, &str)],
    ) -> Result<std::result::Result<TokenReply, String>> {
        let mut form: Vec<(&str, &str)> = grant.to_vec();
        let secret = self.auth.client_secret.as_ref().map(Secret::expose).unwrap_or("");
        let assertion;
        match self.auth.method {
            AuthMethod::ClientSecretPost => {
                form.push(("client_id", &self.auth.client_id));
                form.push(("client_secret", secret));
            }
            AuthMethod::ClientSecretBasic => {}
            AuthMethod::None => form.push(("client_id", &self.auth.client_id)),
            AuthMethod::ClientHeaders => {
                return Err(Error::Usage("auth.method client-headers is not for patient-access jobs".into()));
            }
            AuthMethod::PrivateKeyJwt => {
                let key = self.key.as_ref().expect("parsed in ClientAuth::new");
                let now = time::OffsetDateTime::now_utc().unix_timestamp();
                let id = &self.auth.client_id;
                let jti = crate::jwt::new_jti();
                let jwt = crate::jwt::client_assertion(key, self.auth.key_id.as_deref(), id, url.as_str(), now, &jti)
                    .map_err(Error::Failed)?;
                assertion = Secret::new(jwt);
                form.push(("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"));
                form.push(("client_assertion", assertion.expose()));
            }
        }
        let (status, body) = retrying(policy, reporter, "token request", || {
            let mut rb = client.post(url.clone()).header("accept", "application/json").form(&form);
            if self.auth.method == AuthMethod::ClientSecretBasic {
                let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
                rb = rb.basic_auth(enc(&self.auth.client_id), Some(enc(secret)));
            }
            plain_attempt(rb, MAX_TOKEN_BODY, &self.timeouts)
        })
        .await?;
        if !status.is_success() {
            return Ok(Err(token_error_text(&body, status.as_u16())));
        }
        let bad = |why: String| Error::AuthRefused { url: url.to_string(), detail: why };
        let raw: RawReply = serde_json::from_slice(&body)
            .map_err(|e| bad(format!("the token response is not the JSON expected ({e})")))?;
        if let Some(tt) = raw.token_type.as_deref().filter(|t| !t.eq_ignore_ascii_case("bearer")) {
            return Err(bad(format!("token_type is {tt:?}; only bearer tokens are supported")));
        }
        Ok(Ok(TokenReply {
            access_token: Secret::new(raw.access_token),
            expires_in: expires_in_secs(&raw.expires_in),
            refresh_token: raw.refresh_token.filter(|t| !t.is_empty()).map(Secret::new),
            patient: raw.patient.filter(|p| !p.is_empty()),
            scope: raw.scope,
        }))
    }
}

/// The token source of a patient-access run: the saved refresh token, traded for access tokens.
pub struct RefreshGrant {
    client: ClientAuth,
    state: JobState,
    token_url: Url,
    /// `oneup-bulk authorize <job>`, for the message when the plan refuses the refresh token.
    authorize: String,
    conn: Mutex<Connection>,
}

impl RefreshGrant {
    /// The job's saved connection; none, or one made for another plan or app, is exit 3 with the
    /// `authorize` command to run.
    pub fn new(job: &Job) -> Result<Self> {
        let state = JobState::new(&job.job_dir());
        let conn = Connection::for_run(job, &state)?;
        let token_url = job.auth.token_url.clone().ok_or_else(|| Error::Usage("auth.token_url is not set".into()))?;
        Ok(RefreshGrant {
            client: ClientAuth::new(job)?,
            state,
            token_url,
            authorize: authorize_command(job),
            conn: Mutex::new(conn),
        })
    }

    /// A fresh access token and its lifetime. A rotated refresh token is on disk before this returns.
    pub async fn fetch(
        &self,
        client: &reqwest::Client,
        policy: &RetryPolicy,
        reporter: &dyn Reporter,
    ) -> Result<(Secret, Option<Duration>)> {
        let mut conn = self.conn.lock().await;
        let grant = [("grant_type", "refresh_token"), ("refresh_token", conn.refresh_token.expose())];
        let reply = match self.client.post(client, policy, reporter, &self.token_url, &grant).await? {
            Ok(r) => r,
            Err(detail) => {
                return Err(Error::AuthRefused {
                    url: self.token_url.to_string(),
                    detail: format!(
                        "{detail}; the plan no longer accepts this member's connection: run `{}` to connect again",
                        self.authorize
                    ),
                });
            }
        };
        if let Some(p) = reply.patient.as_deref().filter(|p| *p != conn.patient) {
            return Err(Error::AuthRefused {
                url: self.token_url.to_string(),
                detail: format!(
                    "the plan's token is for Patient/{p}, but this job's member is Patient/{}: run `{}` again",
                    conn.patient, self.authorize
                ),
            });
        }
        if let Some(rt) = reply.refresh_token.filter(|rt| *rt != conn.refresh_token) {
            let mut next = conn.clone();
            next.refresh_token = rt;
            next.rotated = Some(crate::instant::now());
            // The old token is dead now; without the new one on disk the connection is lost.
            next.save(&self.state).map_err(|e| {
                Error::Failed(format!(
                    "{e}; the plan replaced the member's refresh token and the new one could not be saved (nothing was read with it): fix that, then run `{}`",
                    self.authorize
                ))
            })?;
            *conn = next;
            tracing::debug!("the plan rotated the refresh token; the new one is saved");
        }
        Ok((reply.access_token, reply.expires_in.map(Duration::from_secs)))
    }
}
