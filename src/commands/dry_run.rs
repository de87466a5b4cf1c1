//! `run --dry-run`: the requests a run would send first (the token request and the kick-off), exactly
//! as they would go out but with every secret redacted, then what would follow. Nothing is sent.

use std::fmt::Write as _;

use crate::export::kickoff;
use crate::job::{AuthMethod, Job};

/// `--dry-run`: the token request and the kick-off as they would be sent, secrets redacted.
pub(super) fn dry_run(job: &Job) -> String {
    if job.patient.is_some() {
        return crate::patient::dry_run(job);
    }
    let since = crate::state::JobState::open(&job.job_location())
        .ok()
        .and_then(|state| crate::export::inflight::resolve_since(job, &state).ok().flatten());
    let k = kickoff::build(job, since);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# job {} ({})",
        job.name,
        job.source.as_ref().map(|p| p.display().to_string()).unwrap_or_default()
    );
    match job.auth.method {
        AuthMethod::None => {
            let _ = writeln!(s, "# no token (auth.method: none)");
        }
        AuthMethod::ClientHeaders => {
            let _ = writeln!(
                s,
                "# no token request (auth.method: client-headers): the credentials go in headers, to the FHIR server only"
            );
        }
        m => {
            let url = job
                .auth
                .token_url
                .as_ref()
                .map(|u| u.to_string())
                .unwrap_or_else(|| format!("(discovered from {}.well-known/smart-configuration)", job.fhir_base));
            let _ = writeln!(s, "POST {url}");
            let _ = writeln!(s, "Content-Type: application/x-www-form-urlencoded");
            let mut form = vec!["grant_type=client_credentials".to_string()];
            if let Some(sc) = &job.auth.scope {
                form.push(format!("scope={sc}"));
            }
            match m {
                AuthMethod::ClientSecretPost => {
                    form.push(format!("client_id={}", job.auth.client_id));
                    form.push("client_secret=[redacted]".into());
                }
                AuthMethod::ClientSecretBasic => {
                    let _ = writeln!(s, "Authorization: Basic [redacted]");
                }
                _ => {
                    form.push("client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into());
                    form.push("client_assertion=[signed JWT]".into());
                }
            }
            let _ = writeln!(s, "\n{}\n", form.join("&"));
        }
    }
    let _ = writeln!(s, "{} {}", k.method, k.url);
    let _ = writeln!(s, "Accept: application/fhir+json");
    let _ = writeln!(s, "Prefer: {}", k.prefer);
    match job.auth.method {
        AuthMethod::None => {}
        AuthMethod::ClientHeaders => {
            let _ = writeln!(s, "client_id: {}", job.auth.client_id);
            let _ = writeln!(s, "client_secret: [redacted]");
            let _ = writeln!(s, "x-oneup-user-id: {}", crate::session::ONEUP_USER_ID);
        }
        _ => {
            let _ = writeln!(s, "Authorization: Bearer [redacted]");
        }
    }
    for (h, _) in &job.headers {
        let _ = writeln!(s, "{h}: …");
    }
    if let Some(b) = &k.body {
        let _ = writeln!(
            s,
            "Content-Type: application/fhir+json\n\n{}",
            serde_json::to_string_pretty(b).unwrap_or_default()
        );
    }
    let _ = writeln!(
        s,
        "\n# then: poll the status URL, download the manifest's files into {}/<run-id>/",
        job.job_location()
    );
    s
}
