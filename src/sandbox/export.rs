//! Kick-off: `$export` at system, patient and group level, and PDex `$davinci-data-export`.
//!
//! Parameters come from the query (GET) or a FHIR `Parameters` body (POST); both parse into
//! [`ExportParams`] (in `params.rs`), which is recorded as-is so tests can check what the client sent.

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use serde_json::Value;

use super::data::{ResourceType, Selection};
use super::fhir::{FHIR_JSON, json_response, oo, outcome, parse_instant, retry_after};
use super::jobs;
use super::params::{ExportLevel, ExportParams};
use super::{Shared, auth, lock};

/// The PDex `exportType` canonicals the sandbox knows.
pub const EXPORT_TYPES: [&str; 4] = [
    "hl7.fhir.us.davinci-pdex#payertopayer",
    "hl7.fhir.us.davinci-pdex#provider-download",
    "hl7.fhir.us.davinci-pdex#provider-delta",
    "hl7.fhir.us.davinci-pdex#provider-snapshot",
];

const OUTPUT_FORMATS: [&str; 3] = ["application/fhir+ndjson", "application/ndjson", "ndjson"];

/// An accepted kick-off, as recorded for tests.
#[derive(Debug, Clone)]
pub struct KickoffRecord {
    pub method: String,
    /// The absolute kick-off URL (also the manifest's `request`).
    pub url: String,
    pub level: ExportLevel,
    /// `$export` or `$davinci-data-export`.
    pub operation: String,
    pub params: ExportParams,
    /// The POST body, parsed, if there was one.
    pub body: Option<Value>,
    pub job_id: String,
}

fn bad(diagnostics: impl AsRef<str>) -> Response {
    oo(StatusCode::BAD_REQUEST, "invalid", diagnostics)
}

fn header_has(headers: &HeaderMap, name: header::HeaderName, needle: &str) -> bool {
    headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).any(|v| v.to_ascii_lowercase().contains(needle))
}

/// Handle a kick-off. `path_and_query` is what the client sent (for the manifest's `request`).
#[allow(clippy::too_many_arguments)]
pub fn kickoff(
    shared: &Shared,
    method: &Method,
    path_and_query: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
    level: ExportLevel,
    davinci: bool,
) -> Response {
    if let Some(r) = auth::unauthorized(shared, headers) {
        return r;
    }
    if let Some((status, text)) = shared.faults.get().kickoff_error {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return oo(status, "exception", text);
    }
    if shared.faults.take(|f| &mut f.kickoff_429) {
        let r = oo(StatusCode::TOO_MANY_REQUESTS, "throttled", "too many export requests, retry later");
        return retry_after(r, shared.cfg.retry_after);
    }
    if davinci && *method != Method::POST {
        return oo(
            StatusCode::METHOD_NOT_ALLOWED,
            "not-supported",
            "$davinci-data-export must be invoked with POST and a Parameters body",
        );
    }
    if !header_has(headers, header::ACCEPT, "application/fhir+json") {
        return bad("the Accept header must be application/fhir+json");
    }
    if !header_has(headers, header::HeaderName::from_static("prefer"), "respond-async") {
        return bad("the Prefer header must be respond-async");
    }
    let mut params = match ExportParams::from_query(query.unwrap_or("")) {
        Ok(p) => p,
        Err(e) => return bad(e),
    };
    let mut parsed_body = None;
    if *method == Method::POST && !body.iter().all(u8::is_ascii_whitespace) {
        let v: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return bad(format!("the POST body is not JSON: {e}")),
        };
        if let Err(e) = ExportParams::from_parameters(&v, &mut params) {
            return bad(e);
        }
        parsed_body = Some(v);
    }
    let group_patients = match &level {
        ExportLevel::Group(id) => match group_members(shared, id) {
            Some(p) => Some(p),
            None => {
                return oo(StatusCode::NOT_FOUND, "not-found", format!("Group/{id} is not known"));
            }
        },
        // 1up: what a population export covers is up to the server (here: the members matched so far).
        _ => super::oneup::scope(shared),
    };
    let sel = match selection(shared, &params, group_patients, davinci) {
        Ok(s) => s,
        Err(e) => return bad(e),
    };

    let url = format!("{}{}", shared.main_base.as_str().trim_end_matches('/'), path_and_query);
    let sync = shared.faults.get().sync_kickoff;
    let job_id = jobs::create_export(shared, url.clone(), sel, &params, sync);
    lock(&shared.kickoffs).push(KickoffRecord {
        method: method.to_string(),
        url,
        level,
        operation: if davinci { "$davinci-data-export" } else { "$export" }.into(),
        params,
        body: parsed_body,
        job_id: job_id.clone(),
    });
    if sync {
        // The variant 1up documents: the kick-off answers with the manifest itself.
        return super::status::status(shared, &job_id, headers, None);
    }
    accepted(shared, &job_id)
}

/// 202 with an absolute `Content-Location` to the status URL.
pub fn accepted(shared: &Shared, job_id: &str) -> Response {
    let status = shared.faults.get().content_location.unwrap_or_else(|| jobs::status_url(shared, job_id).to_string());
    let mut r = json_response(
        StatusCode::ACCEPTED,
        FHIR_JSON,
        &outcome("information", "informational", "export accepted; poll the Content-Location URL"),
    );
    if let Ok(v) = HeaderValue::from_str(&status) {
        r.headers_mut().insert(header::CONTENT_LOCATION, v);
    }
    r
}

/// Members of a group: `attributed-members` is everyone, others were made by `$bulk-member-match`.
pub fn group_members(shared: &Shared, id: &str) -> Option<Vec<u32>> {
    if id == "attributed-members" {
        return Some((0..shared.spec.patient_count()).collect());
    }
    lock(&shared.groups).get(id).cloned()
}

/// Check the parameters and turn them into what to generate.
fn selection(shared: &Shared, p: &ExportParams, group: Option<Vec<u32>>, davinci: bool) -> Result<Selection, String> {
    let mut types = Vec::new();
    let empty_ok = shared.cfg.oneup.empty_unknown_types;
    let shaped =
        |t: &str| t.starts_with(|c: char| c.is_ascii_uppercase()) && t.chars().all(|c| c.is_ascii_alphanumeric());
    let mut only_unknown = false;
    for t in &p.types {
        match ResourceType::parse(t) {
            Some(rt) => types.push(rt),
            None if empty_ok && shaped(t) => only_unknown = true,
            None => {
                return Err(format!(
                    "_type {t} is not supported by this server; supported: {}",
                    ResourceType::ALL.map(ResourceType::name).join(", ")
                ));
            }
        }
    }
    if types.is_empty() && !only_unknown {
        types = ResourceType::ALL.to_vec();
    }
    types.sort();
    types.dedup();
    let instant = |name: &str, v: &Option<String>| -> Result<Option<i64>, String> {
        match v {
            None => Ok(None),
            Some(s) => parse_instant(s)
                .map(|t| Some(t.unix_timestamp()))
                .ok_or_else(|| format!("{name} {s:?} is not a FHIR instant")),
        }
    };
    let since = instant("_since", &p.since)?;
    let until = instant("_until", &p.until)?;
    if let Some(f) = &p.output_format
        && !OUTPUT_FORMATS.contains(&f.as_str())
    {
        return Err(format!("_outputFormat {f} is not supported; use application/fhir+ndjson"));
    }
    if let Some(o) = &p.organize_output_by
        && o != "Patient"
    {
        return Err(format!("organizeOutputBy {o} is not supported; the sandbox organizes by Patient"));
    }
    if davinci {
        match &p.export_type {
            None => return Err("$davinci-data-export requires the exportType parameter".into()),
            Some(t) if !EXPORT_TYPES.contains(&t.as_str()) => {
                return Err(format!("exportType {t} is not supported; supported: {}", EXPORT_TYPES.join(", ")));
            }
            Some(_) => {}
        }
    }
    let mut patients = group;
    if !p.patients.is_empty() {
        let mut wanted = Vec::new();
        for r in &p.patients {
            let id = r.strip_prefix("Patient/").unwrap_or(r);
            match shared.spec.patient_index(id) {
                Some(i) => wanted.push(i),
                None => return Err(format!("patient {r} is not known to this server")),
            }
        }
        if let Some(members) = &patients {
            wanted.retain(|i| members.contains(i));
        }
        patients = Some(wanted);
    }
    if let Some(p) = &mut patients {
        p.sort_unstable();
        p.dedup();
    }
    Ok(Selection { types, since, until, patients })
}
