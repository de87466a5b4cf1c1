//! The member's connection, saved by `authorize` and kept current by `run`: the refresh token and the
//! patient id, in `.state/connection.json` (owner-only, written atomically). It is the only file the
//! refresh token is ever written to; nothing prints or logs it ([`Secret`]).
//!
//! The connection remembers the plan (token URL) and the app (client id) it was made with: a job
//! changed to another plan or app cannot use it, and says so instead of sending the token there.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::job::Job;
use crate::private_fs::write_json;
use crate::redact::Secret;
use crate::state::JobState;

pub const CONNECTION_FILE: &str = "connection.json";

#[derive(Debug, Clone, PartialEq)]
pub struct Connection {
    /// The member's `Patient` id on the plan's FHIR server.
    pub patient: String,
    pub refresh_token: Secret,
    /// The scope the plan granted, when it said.
    pub scope: Option<String>,
    pub token_url: String,
    pub client_id: String,
    /// RFC 3339: when `authorize` made the connection, and when the refresh token last changed.
    pub connected: String,
    pub rotated: Option<String>,
}

/// The file's shape. Only this module turns the secret into text, and only to write the file.
#[derive(Serialize, Deserialize)]
struct Stored {
    patient: String,
    refresh_token: String,
    scope: Option<String>,
    token_url: String,
    client_id: String,
    connected: String,
    rotated: Option<String>,
}

impl Connection {
    /// The saved connection of a job, if `authorize` made one.
    pub fn load(state: &JobState) -> Result<Option<Self>> {
        let path = state.dir.join(CONNECTION_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let s: Stored = serde_json::from_slice(&bytes).map_err(|e| {
            Error::Failed(format!(
                "{}: unreadable connection ({e}); run `{} authorize` again",
                path.display(),
                crate::invocation::program()
            ))
        })?;
        Ok(Some(Connection {
            patient: s.patient,
            refresh_token: Secret::new(s.refresh_token),
            scope: s.scope,
            token_url: s.token_url,
            client_id: s.client_id,
            connected: s.connected,
            rotated: s.rotated,
        }))
    }

    /// Writes the connection atomically (write, fsync, rename), mode 0600, in a 0700 folder.
    pub fn save(&self, state: &JobState) -> Result<()> {
        state.create()?;
        let stored = Stored {
            patient: self.patient.clone(),
            refresh_token: self.refresh_token.expose().to_string(),
            scope: self.scope.clone(),
            token_url: self.token_url.clone(),
            client_id: self.client_id.clone(),
            connected: self.connected.clone(),
            rotated: self.rotated.clone(),
        };
        write_json(&state.dir.join(CONNECTION_FILE), &stored)
    }

    /// The job's connection, ready for `run`: saved, and made with this job's plan and app.
    pub fn for_run(job: &Job, state: &JobState) -> Result<Self> {
        let refused = |detail: String| Error::AuthRefused { url: token_url(job), detail };
        let Some(c) = Self::load(state)? else {
            return Err(refused(format!(
                "no member is connected to this job yet: run `{}` once, with the member",
                authorize_command(job)
            )));
        };
        if c.token_url != token_url(job) || c.client_id != job.auth.client_id {
            return Err(refused(format!(
                "the saved connection was made with {} (client {}), not this job's plan and app: run `{}` again",
                c.token_url,
                c.client_id,
                authorize_command(job)
            )));
        }
        Ok(c)
    }
}

fn token_url(job: &Job) -> String {
    job.auth.token_url.as_ref().map(|u| u.to_string()).unwrap_or_default()
}

/// `oneup-bulk authorize <the job file>`: what to run when the connection is missing or refused.
pub fn authorize_command(job: &Job) -> String {
    format!("{} authorize {}", crate::invocation::program(), job.file_label())
}

/// Whether a job has a connection, without reading the secret (for `status`).
pub fn exists(job_dir: &Path) -> bool {
    JobState::new(job_dir).dir.join(CONNECTION_FILE).is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_owner_only_and_read_back() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let state = JobState::new(&d.path().join("job"));
        let c = Connection {
            patient: "pt-3".into(),
            refresh_token: Secret::new("rt-not-real"),
            scope: Some("patient/*.read".into()),
            token_url: "https://auth.example/oauth2/token".into(),
            client_id: "app".into(),
            connected: "2025-01-01T00:00:00Z".into(),
            rotated: None,
        };
        assert_eq!(Connection::load(&state).unwrap(), None);
        c.save(&state).unwrap();
        assert_eq!(Connection::load(&state).unwrap(), Some(c.clone()));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&state.dir.join(CONNECTION_FILE)), 0o600);
        assert_eq!(mode(&state.dir), 0o700);
        assert!(!format!("{c:?}").contains("rt-not-real"));
    }
}
