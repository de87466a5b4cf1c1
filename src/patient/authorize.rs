//! `authorize`, the library half: a launch begun ([`begin`]: PKCE, `state`, the authorize URL), and a
//! launch completed ([`complete`]: `state` checked, the code exchanged at once — 1up's codes live five
//! minutes and work once —, the refresh token and patient id saved, the member's name read when the
//! Patient resource is readable). The command (printing, listening, pasting) is
//! `commands/authorize.rs`.

use std::sync::Arc;

use reqwest::header::ACCEPT;
use serde_json::Value;
use url::Url;

use super::connection::Connection;
use super::launch::{self, Pkce};
use super::paging::Paging;
use super::tokens::{ClientAuth, TokenReply};
use crate::error::{Error, Result};
use crate::http::{RetryPolicy, client, plain_attempt, retrying};
use crate::job::Job;
use crate::progress::Reporter;
use crate::redact::Secret;
use crate::state::{CHECKPOINT, JobState};

/// A launch waiting for the member.
pub struct Started {
    /// Where the member logs in (printed on a line of its own).
    pub url: Url,
    state: String,
    pkce: Pkce,
}

/// Who is connected.
#[derive(Debug)]
pub struct Connected {
    pub patient: String,
    /// From the Patient resource, when it could be read.
    pub name: Option<String>,
    pub scope: Option<String>,
    /// The job was connected to another member before: its read in flight and checkpoint were reset.
    pub replaced: Option<String>,
}

pub fn begin(job: &Job) -> Result<Started> {
    let p = job.patient.as_ref().ok_or_else(|| not_patient_access(job))?;
    let (pkce, state) = (Pkce::new(), launch::new_state());
    Ok(Started { url: launch::authorize_url(job, p, &pkce, &state), state, pkce })
}

pub fn not_patient_access(job: &Job) -> Error {
    Error::Usage(format!(
        "{} is an `access: {}` job; `authorize` connects a member for `access: patient-access` jobs",
        job.file_label(),
        job.access.as_str()
    ))
}

/// Finishes a launch with what the plan redirected to (`redirect`: the URL or its query).
pub async fn complete(
    job: &Job,
    state: &JobState,
    started: Started,
    redirect: &str,
    reporter: Arc<dyn Reporter>,
) -> Result<Connected> {
    let p = job.patient.as_ref().ok_or_else(|| not_patient_access(job))?;
    let token_url = job.auth.token_url.clone().ok_or_else(|| Error::Usage("auth.token_url is not set".into()))?;
    let refused = |detail: String| Error::AuthRefused { url: token_url.to_string(), detail };
    let callback = launch::parse_redirect(redirect).map_err(Error::Usage)?;
    let code = launch::check(callback, &started.state).map_err(refused)?;
    let http = client(job)?;
    let policy = RetryPolicy::from_job(job);
    let grant = [
        ("grant_type", "authorization_code"),
        ("code", code.expose()),
        ("redirect_uri", p.redirect_uri.as_str()),
        ("code_verifier", started.pkce.verifier.expose()),
    ];
    let reply: TokenReply = ClientAuth::new(job)?.post(&http, &policy, &*reporter, &token_url, &grant).await?.map_err(|d| {
        refused(format!("{d}; a code works once and expires within minutes (5 at 1up): run `authorize` again and finish the login promptly"))
    })?;
    let Some(refresh_token) = reply.refresh_token else {
        return Err(refused(
            "the plan gave no refresh token, and unattended runs need one (check auth.scope: some plans want `offline_access`)".into(),
        ));
    };
    let patient = match reply.patient {
        Some(p) => p,
        None => only_patient(job, &http, &policy, &*reporter, &reply.access_token).await?.ok_or_else(|| {
            refused("the token response names no patient, and the Patient search did not give exactly one: add `launch/patient` to auth.scope".into())
        })?,
    };
    let before = Connection::load(state).ok().flatten();
    let replaced = before.map(|c| c.patient).filter(|old| *old != patient);
    if replaced.is_some() {
        // Another member's read and checkpoint must not shape this member's runs.
        Paging::clear(state)?;
        let _ = std::fs::remove_file(state.dir.join(CHECKPOINT));
    }
    let conn = Connection {
        patient: patient.clone(),
        refresh_token,
        scope: reply.scope.clone(),
        token_url: token_url.to_string(),
        client_id: job.auth.client_id.clone(),
        connected: crate::instant::now(),
        rotated: None,
    };
    conn.save(state)?;
    let name = read_name(job, &http, &policy, &*reporter, &reply.access_token, &patient).await;
    Ok(Connected { patient, name, scope: reply.scope, replaced })
}

/// GETs a FHIR JSON document with the member's token; `None` on any failure (it is only for display
/// or a fallback).
async fn get(
    job: &Job,
    http: &reqwest::Client,
    policy: &RetryPolicy,
    reporter: &dyn Reporter,
    token: &Secret,
    path: &str,
) -> Option<Value> {
    let url = job.fhir_base.join(path).ok()?;
    let (status, body) = retrying(policy, reporter, "Patient read", || {
        let mut rb = http.get(url.clone()).header(ACCEPT, "application/fhir+json").bearer_auth(token.expose());
        for (k, v) in &job.headers {
            rb = rb.header(k, v);
        }
        plain_attempt(rb, 16 << 20, &job.timeouts)
    })
    .await
    .ok()?;
    status.is_success().then(|| serde_json::from_slice(&body).ok()).flatten()
}

/// The one Patient a patient-scoped token can search, for plans that leave `patient` out.
async fn only_patient(
    job: &Job,
    http: &reqwest::Client,
    policy: &RetryPolicy,
    reporter: &dyn Reporter,
    token: &Secret,
) -> Result<Option<String>> {
    let Some(b) = get(job, http, policy, reporter, token, "Patient").await else {
        return Ok(None);
    };
    let ids: Vec<&str> = b["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["resource"]["resourceType"] == "Patient")
        .filter_map(|e| e["resource"]["id"].as_str())
        .collect();
    Ok(match ids.as_slice() {
        [one] => Some(one.to_string()),
        _ => None,
    })
}

async fn read_name(
    job: &Job,
    http: &reqwest::Client,
    policy: &RetryPolicy,
    reporter: &dyn Reporter,
    token: &Secret,
    patient: &str,
) -> Option<String> {
    let id: String = url::form_urlencoded::byte_serialize(patient.as_bytes()).collect();
    let p = get(job, http, policy, reporter, token, &format!("Patient/{id}")).await?;
    display_name(&p)
}

/// `name[0].text`, else the given names and the family name.
pub fn display_name(patient: &Value) -> Option<String> {
    let n = patient["name"].as_array()?.first()?;
    if let Some(t) = n["text"].as_str().filter(|t| !t.trim().is_empty()) {
        return Some(t.trim().to_string());
    }
    let mut parts: Vec<&str> = n["given"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    parts.extend(n["family"].as_str());
    (!parts.is_empty()).then(|| parts.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_for_people() {
        let p = serde_json::json!({"name": [{"family": "Argonaut", "given": ["Jason", "J"]}, {"text": "other"}]});
        assert_eq!(display_name(&p).as_deref(), Some("Jason J Argonaut"));
        assert_eq!(display_name(&serde_json::json!({"name": [{"text": " Ann Lee "}]})).as_deref(), Some("Ann Lee"));
        assert_eq!(display_name(&serde_json::json!({"id": "x"})), None);
    }
}
