//! Kick-off (DESIGN §1.3): which URL, GET or POST, which parameters. [`build`] is pure; [`send`] is the
//! thin I/O around it: `202` + `Content-Location` is an export under way, `200` with a manifest a
//! synchronous one (1up documents this variant), anything else an error the user can act on.
//! 1up's GET-only rule (`provider-access`, `payer-to-payer`) is kept at resolution: a job whose request
//! needs a POST there says `export.method: post`, so `build` never has to choose against the job.

use bytes::Bytes;
use reqwest::Method;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderName};
use serde_json::{Value, json};
use time::OffsetDateTime;
use url::Url;

use crate::error::{Error, Result};
use crate::fhir::outcome_text;
use crate::http::MAX_SMALL_BODY;
use crate::job::{Job, KickoffMethod, Level, Operation};
use crate::session::{Req, Session, TokenUse};

/// One kick-off parameter. Values are strings on the wire; the kind decides the `Parameters` value[x].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    String(&'static str, String),
    Instant(&'static str, String),
    Boolean(&'static str, bool),
    Reference(&'static str, String),
}

impl Param {
    fn name(&self) -> &'static str {
        match self {
            Param::String(n, _) | Param::Instant(n, _) | Param::Boolean(n, _) | Param::Reference(n, _) => n,
        }
    }

    fn value(&self) -> String {
        match self {
            Param::String(_, v) | Param::Instant(_, v) | Param::Reference(_, v) => v.clone(),
            Param::Boolean(_, b) => b.to_string(),
        }
    }

    fn to_parameter(&self) -> Value {
        match self {
            Param::String(n, v) => json!({"name": n, "valueString": v}),
            Param::Instant(n, v) => json!({"name": n, "valueInstant": v}),
            Param::Boolean(n, v) => json!({"name": n, "valueBoolean": v}),
            Param::Reference(n, v) => json!({"name": n, "valueReference": {"reference": v}}),
        }
    }
}

/// The kick-off request, decided from the job alone.
#[derive(Debug, Clone, PartialEq)]
pub struct Kickoff {
    pub method: Method,
    /// For GET, with the query string.
    pub url: Url,
    /// For POST: a FHIR `Parameters` resource.
    pub body: Option<Value>,
    pub prefer: String,
}

impl Kickoff {
    /// The parameters as the event log records them: the `Parameters` body of a POST, else the query.
    pub fn logged_parameters(&self) -> Value {
        self.body.clone().unwrap_or_else(|| json!(self.url.query().unwrap_or("")))
    }
}

/// The operation path relative to the FHIR base.
pub fn operation_path(job: &Job) -> String {
    let op = match job.export.operation {
        Operation::Export => "$export",
        Operation::DavinciDataExport => "$davinci-data-export",
    };
    match job.export.level {
        Level::System => op.to_string(),
        Level::Patient => format!("Patient/{op}"),
        Level::Group => {
            let id = job.export.group_id.as_deref().unwrap_or_default();
            let id: String = url::form_urlencoded::byte_serialize(id.as_bytes()).collect();
            format!("Group/{id}/{op}")
        }
    }
}

/// The parameters the job asks for, in a stable order. `_type` values are joined into one comma list
/// (some servers ignore repeated `_type`); each `_typeFilter` is its own parameter, because a filter's
/// own query may contain commas.
pub fn params(job: &Job, since: Option<OffsetDateTime>) -> Vec<Param> {
    let e = &job.export;
    let mut p = Vec::new();
    if let Some(t) = &e.export_type {
        p.push(Param::String("exportType", t.clone()));
    }
    if let Some(f) = &e.output_format {
        p.push(Param::String("_outputFormat", f.clone()));
    }
    if !e.types.is_empty() {
        p.push(Param::String("_type", e.types.join(",")));
    }
    if let Some(s) = since {
        p.push(Param::Instant("_since", crate::instant::format(s)));
    }
    if let Some(u) = e.until {
        p.push(Param::Instant("_until", crate::instant::format(u)));
    }
    if !e.elements.is_empty() {
        p.push(Param::String("_elements", e.elements.join(",")));
    }
    for f in &e.type_filters {
        p.push(Param::String("_typeFilter", f.clone()));
    }
    for r in &e.patients {
        p.push(Param::Reference("patient", r.clone()));
    }
    if !e.include_associated_data.is_empty() {
        p.push(Param::String("includeAssociatedData", e.include_associated_data.join(",")));
    }
    if let Some(o) = &e.organize_output_by {
        p.push(Param::String("organizeOutputBy", o.clone()));
    }
    if e.allow_partial_manifests {
        p.push(Param::Boolean("allowPartialManifests", true));
    }
    p
}

/// Decides the whole kick-off request. `since` is the resolved `_since` (from the job, `--since` or the
/// checkpoint).
pub fn build(job: &Job, since: Option<OffsetDateTime>) -> Kickoff {
    let params = params(job, since);
    let needs_post = !job.export.patients.is_empty() || job.export.operation == Operation::DavinciDataExport;
    let post = match job.export.method {
        KickoffMethod::Post => true,
        KickoffMethod::Get => needs_post,
        KickoffMethod::Auto => needs_post,
    };
    let mut url = job.fhir_base.join(&operation_path(job)).expect("operation paths are relative");
    let prefer = if job.export.lenient { "respond-async, handling=lenient" } else { "respond-async" }.to_string();
    if post {
        let body = json!({
            "resourceType": "Parameters",
            "parameter": params.iter().map(Param::to_parameter).collect::<Vec<_>>(),
        });
        Kickoff { method: Method::POST, url, body: Some(body), prefer }
    } else {
        if !params.is_empty() {
            let mut q = url.query_pairs_mut();
            for p in &params {
                q.append_pair(p.name(), &p.value());
            }
        }
        Kickoff { method: Method::GET, url, body: None, prefer }
    }
}

/// How the server took the kick-off.
#[derive(Debug)]
pub enum Accepted {
    /// `202`: poll this status URL.
    Async(Url),
    /// `200` with the completion manifest: the export is already done (a checked manifest body).
    Complete(Bytes),
}

/// Sends the kick-off.
pub async fn send(session: &Session, k: &Kickoff) -> Result<Accepted> {
    let mut req = Req {
        method: k.method.clone(),
        url: k.url.clone(),
        headers: Vec::new(),
        body: k.body.as_ref().map(|b| Bytes::from(serde_json::to_vec(b).expect("JSON serialises"))),
        token: TokenUse::AllowedOrigins,
        what: "kick-off".into(),
    }
    .header(ACCEPT, "application/fhir+json")
    .header(HeaderName::from_static("prefer"), &k.prefer);
    if k.body.is_some() {
        req = req.header(CONTENT_TYPE, "application/fhir+json");
    }
    let reply = session.send(&req, MAX_SMALL_BODY).await?;
    let status = reply.status.as_u16();
    match status {
        202 => super::poll::status_location(&reply.headers, &k.url, "kick-off").map(Accepted::Async),
        401 | 403 => {
            let mut detail = format!("HTTP {status} on kick-off: {}", outcome_text(&reply.body));
            if status == 403 && k.method == Method::POST && session.access.get_only() {
                detail.push_str(
                    " (1up answers 403 to POST on population-level exports: without `export.method: post` the kick-off is a GET)",
                );
            }
            Err(Error::AuthRefused { url: k.url.to_string(), detail })
        }
        200 => match super::manifest::parse(&reply.body) {
            Ok(_) => Ok(Accepted::Complete(reply.body)),
            Err(_) => Err(Error::ServerRejected(format!(
                "the server answered the kick-off with 200 and a body that is not a completion manifest: {}",
                outcome_text(&reply.body)
            ))),
        },
        _ => Err(Error::ServerRejected(format!("HTTP {status} on kick-off: {}", outcome_text(&reply.body)))),
    }
}
