//! `check JOB`: a dry connection test. Discovery (when the job has no token URL), a token, the
//! CapabilityStatement, which export operations the server advertises, and the size of the Group a
//! group export names (1up's 10,000-member limit); no export is started.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use reqwest::header::ACCEPT;
use serde_json::Value;

use crate::cli::Global;
use crate::error::{Error, exit};
use crate::job::{AuthMethod, Job, JwtAlgorithm, Level};
use crate::progress::Silent;
use crate::session::{Req, Session, TokenUse};

use super::load_job;

pub async fn check(path: &Path, _g: &Global) -> Result<u8, Error> {
    let job = load_job(path, &Default::default())?;
    let report = check_job(&job).await?;
    print!("{report}");
    Ok(exit::OK)
}

/// Runs the checks and returns the report text; the first failing step is the error.
pub async fn check_job(job: &Job) -> Result<String, Error> {
    let session = Session::new(job, Arc::new(Silent))?;
    let mut out = String::new();
    let _ = writeln!(out, "{}: {}", job.name, job.fhir_base);

    // SMART configuration: advertised auth methods and algorithms.
    let smart_url = job.fhir_base.join(".well-known/smart-configuration").expect("relative");
    let mut req = Req::get(smart_url.clone(), "SMART configuration").header(ACCEPT, "application/json");
    req.token = TokenUse::Never;
    match session.send(&req, 1 << 20).await {
        Ok(r) if r.status.is_success() => {
            let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
            let _ = writeln!(out, "  smart-configuration: found");
            for w in advertised_warnings(job, &v) {
                let _ = writeln!(out, "  warning: {w}");
            }
        }
        Ok(r) => {
            let _ = writeln!(out, "  smart-configuration: HTTP {} (not advertised)", r.status.as_u16());
        }
        Err(e) => {
            let _ = writeln!(out, "  smart-configuration: {e}");
        }
    }

    if job.auth.method == AuthMethod::ClientHeaders {
        let _ = writeln!(
            out,
            "  credentials: client headers to {} (no token request)",
            job.fhir_base.origin().ascii_serialization()
        );
    } else if job.auth.method != AuthMethod::None {
        let url = session.tokens.token_url().await?;
        let _ = writeln!(out, "  token URL: {url}");
        session.tokens.bearer().await?;
        let _ = writeln!(out, "  token: obtained ({})", job.auth.method.as_str());
    }

    let meta = job.fhir_base.join("metadata").expect("relative");
    let r =
        session.send(&Req::get(meta, "CapabilityStatement").header(ACCEPT, "application/fhir+json"), 16 << 20).await?;
    if !r.status.is_success() {
        return Err(Error::ServerRejected(format!(
            "GET metadata answered HTTP {}: {}",
            r.status.as_u16(),
            crate::fhir::outcome_text(&r.body)
        )));
    }
    let cs: Value = serde_json::from_slice(&r.body)
        .map_err(|e| Error::ServerRejected(format!("the CapabilityStatement is not JSON: {e}")))?;
    let software = cs.pointer("/software/name").and_then(Value::as_str).unwrap_or("unknown software");
    let version = cs.pointer("/software/version").and_then(Value::as_str).unwrap_or("");
    let _ = writeln!(out, "  server: {software} {version}, FHIR {}", cs["fhirVersion"].as_str().unwrap_or("?"));
    let ops = export_operations(&cs);
    let _ = writeln!(
        out,
        "  export operations: {}",
        if ops.is_empty() { "none advertised".into() } else { ops.join(", ") }
    );
    if let (Level::Group, Some(id)) = (job.export.level, &job.export.group_id) {
        match crate::export::group::read_size(&session, job, id).await {
            Ok(n) => {
                let _ = writeln!(out, "  Group/{id}: {n} members");
                if let Some(w) = crate::export::group::limit_warning(job.access, id, n) {
                    let _ = writeln!(out, "  warning: {w}");
                }
            }
            Err(why) => {
                let _ = writeln!(out, "  Group/{id}: not read ({why})");
            }
        }
    }
    let _ = writeln!(out, "ok: no export was started");
    Ok(out)
}

/// Operations named in the CapabilityStatement (system and resource level) that relate to exports.
pub fn export_operations(cs: &Value) -> Vec<String> {
    let mut ops = Vec::new();
    for rest in cs["rest"].as_array().into_iter().flatten() {
        for op in rest["operation"].as_array().into_iter().flatten() {
            if let Some(n) = op["name"].as_str() {
                ops.push(format!("system ${n}"));
            }
        }
        for res in rest["resource"].as_array().into_iter().flatten() {
            let t = res["type"].as_str().unwrap_or("?");
            for op in res["operation"].as_array().into_iter().flatten() {
                if let Some(n) = op["name"].as_str() {
                    ops.push(format!("{t} ${n}"));
                }
            }
        }
    }
    ops.retain(|o| o.contains("export") || o.contains("member-match"));
    ops.sort();
    ops.dedup();
    ops
}

/// Mismatches between the job's auth and what the server's SMART configuration advertises.
pub fn advertised_warnings(job: &Job, smart: &Value) -> Vec<String> {
    let mut w = Vec::new();
    let wanted = match job.auth.method {
        AuthMethod::ClientSecretPost => Some("client_secret_post"),
        AuthMethod::ClientSecretBasic => Some("client_secret_basic"),
        AuthMethod::PrivateKeyJwt => Some("private_key_jwt"),
        AuthMethod::None | AuthMethod::ClientHeaders => None,
    };
    if let (Some(m), Some(list)) = (wanted, smart["token_endpoint_auth_methods_supported"].as_array())
        && !list.iter().any(|v| v == m)
    {
        w.push(format!(
            "the server does not advertise {m} (it lists {}); the token request may be refused",
            join(list)
        ));
    }
    if job.auth.method == AuthMethod::PrivateKeyJwt {
        let alg = match job.auth.algorithm {
            JwtAlgorithm::Rs384 => "RS384",
            JwtAlgorithm::Es384 => "ES384",
        };
        if let Some(list) = smart["token_endpoint_auth_signing_alg_values_supported"].as_array()
            && !list.iter().any(|v| v == alg)
        {
            w.push(format!("the server does not advertise {alg} signing (it lists {})", join(list)));
        }
    }
    w
}

fn join(list: &[Value]) -> String {
    list.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", ")
}
