//! Request dispatch for both listeners, request recording, and the discovery documents
//! (`.well-known/smart-configuration`, `metadata`).
//!
//! One fallback handler matches on method and path segments instead of axum routes: FHIR operation
//! names start with `$` (sometimes sent as `%24`), and every request must be recorded before anything
//! else happens, including the ones no route would match.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use serde_json::{Value, json};

use super::export::kickoff;
use super::fhir::{FHIR_JSON, json_response, oo};
use super::params::ExportLevel;
use super::{
    Listener, RecordedRequest, Shared, auth, chaos, files, hrex, jobs, lock, member_data, member_match, oneup, plan,
};

const RECORDED_BODY_MAX: usize = 64 * 1024;
const BODY_MAX: usize = 32 * 1024 * 1024;

pub fn router(shared: Arc<Shared>, listener: Listener) -> Router {
    Router::new().fallback(handle).with_state((shared, listener))
}

async fn handle(State((shared, listener)): State<(Arc<Shared>, Listener)>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, BODY_MAX).await {
        Ok(b) => b,
        Err(_) => {
            return oo(StatusCode::PAYLOAD_TOO_LARGE, "too-costly", "request body too large");
        }
    };
    let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    lock(&shared.requests).push(RecordedRequest {
        listener,
        version: parts.version,
        method: parts.method.to_string(),
        path: path_and_query.clone(),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| (n.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect(),
        body: body.slice(..body.len().min(RECORDED_BODY_MAX)),
    });
    if parts.headers.contains_key(axum::http::header::AUTHORIZATION)
        && shared.faults.take_reject_token(&path_and_query.replace("%24", "$"))
    {
        auth::revoke(&shared, &parts.headers);
        plan::revoke(&shared, &parts.headers);
        return oo(StatusCode::UNAUTHORIZED, "expired", "access token expired (injected fault: reject_token_on)");
    }
    let faults = &shared.faults;
    if faults.take_lose_exports(&path_and_query.replace("%24", "$")) {
        lock(&shared.jobs).clear();
    }
    if faults.get().hang_on.is_some_and(|p| path_and_query.replace("%24", "$").contains(&p)) {
        // Read, recorded, never answered: the client's own timeout is the only way out.
        std::future::pending::<()>().await;
    }
    let path = parts.uri.path().replace("%24", "$");
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let segs = match oneup::rewrite(&shared, segs) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let mut chaos_rng = None;
    if let Some(c) = &shared.chaos
        && let Some(stage) = chaos_stage(&parts.method, &segs)
    {
        let mut rng = c.arrival();
        let token = chaos::bearer(&parts.headers);
        let revoke = || auth::revoke(&shared, &parts.headers);
        if let Some(r) = c.intercept(&mut rng, stage, parts.uri.query(), token, revoke) {
            return r;
        }
        chaos_rng = Some(chaos::FileDraw { rng, sig: chaos::signature(parts.uri.query()) });
    }
    let req = Req {
        shared: &shared,
        method: &parts.method,
        path_and_query: &path_and_query,
        query: parts.uri.query(),
        headers: &parts.headers,
        body: &body,
    };
    if listener == Listener::Storage {
        return match (&parts.method, segs.as_slice()) {
            (&Method::GET, ["files", job, name]) => {
                files::serve(shared.clone(), listener, job, name, &parts.headers, chaos_rng).await
            }
            _ => oo(StatusCode::NOT_FOUND, "not-found", "no such object"),
        };
    }
    let m = &parts.method;
    let get_or_post = *m == Method::GET || *m == Method::POST;
    match segs.as_slice() {
        ["auth", "token"] if *m == Method::POST => auth::token(&shared, &parts.headers, &body),
        ["fhir", ".well-known", "smart-configuration"] if *m == Method::GET && shared.cfg.smart_configuration => {
            smart_configuration(&shared)
        }
        ["fhir", "metadata"] if *m == Method::GET => metadata(&shared),
        ["fhir", "$export"] if get_or_post => req.kickoff(ExportLevel::System, false),
        ["fhir", "Patient", "$export"] if get_or_post => req.kickoff(ExportLevel::Patient, false),
        ["fhir", "Patient", "$member-match"] if *m == Method::POST => {
            hrex::member_match(&shared, &parts.headers, &body)
        }
        ["fhir", "Group", "$bulk-member-match"] if *m == Method::POST => {
            member_match::bulk_member_match(&shared, &path_and_query, &parts.headers, &body)
        }
        ["fhir", "Group", id, "$export"] if get_or_post => req.kickoff(ExportLevel::Group(id.to_string()), false),
        ["fhir", "Group", id, "$davinci-data-export"] if get_or_post => {
            req.kickoff(ExportLevel::Group(id.to_string()), true)
        }
        ["fhir", "Group", id] if *m == Method::GET => member_match::read_group(&shared, id, &parts.headers),
        ["fhir", "$export-status", id] if *m == Method::GET => {
            super::status::status(&shared, id, &parts.headers, parts.uri.query())
        }
        ["fhir", "$export-status", id] if *m == Method::DELETE => match oneup::refuse(&shared, m) {
            Some(r) => r,
            None => jobs::delete(&shared, id, &parts.headers),
        },
        ["files", job, name] if *m == Method::GET => {
            files::serve(shared.clone(), listener, job, name, &parts.headers, chaos_rng).await
        }
        // Patient Access: the plan's auth server and the member's FHIR reads.
        ["oauth2", "authorize", system] if *m == Method::GET => plan::authorize(&shared, system, parts.uri.query()),
        ["oauth2", "token"] if *m == Method::POST => plan::token(&shared, &parts.headers, &body),
        ["fhir", "Patient", id, "$everything"] if *m == Method::GET => {
            member_data::everything(&shared, id, &path, parts.uri.query(), &parts.headers)
        }
        ["fhir", "Patient", id] if *m == Method::GET => member_data::read_patient(&shared, id, &parts.headers),
        ["fhir", t] if *m == Method::GET && super::ResourceType::parse(t).is_some() => {
            member_data::search(&shared, t, &path, parts.uri.query(), &parts.headers)
        }
        _ => oo(
            StatusCode::NOT_FOUND,
            "not-supported",
            format!("{m} {} is not supported by the sandbox", parts.uri.path()),
        ),
    }
}

/// Where a request stands in the flow, for chaos mode; `None` for discovery, DELETE and the rest.
fn chaos_stage(m: &Method, segs: &[&str]) -> Option<chaos::Stage> {
    let get_or_post = *m == Method::GET || *m == Method::POST;
    match segs {
        ["auth", "token"] if *m == Method::POST => Some(chaos::Stage::Token),
        ["files", _, _] if *m == Method::GET => Some(chaos::Stage::File),
        ["fhir", "$export-status", _] if *m == Method::GET => Some(chaos::Stage::Status),
        [.., op] if get_or_post && (*op == "$export" || *op == "$davinci-data-export") => Some(chaos::Stage::Kickoff),
        _ => None,
    }
}

/// The pieces of a request a kick-off needs.
struct Req<'a> {
    shared: &'a Shared,
    method: &'a Method,
    path_and_query: &'a str,
    query: Option<&'a str>,
    headers: &'a HeaderMap,
    body: &'a Bytes,
}

impl Req<'_> {
    fn kickoff(&self, level: ExportLevel, davinci: bool) -> Response {
        if let Some(r) = oneup::refuse(self.shared, self.method) {
            return r;
        }
        kickoff(self.shared, self.method, self.path_and_query, self.query, self.headers, self.body, level, davinci)
    }
}

fn smart_configuration(shared: &Shared) -> Response {
    let token = shared.faults.get().discovery_token_endpoint.unwrap_or_else(|| shared.token_url().to_string());
    json_response(
        StatusCode::OK,
        "application/json",
        &json!({
            "issuer": shared.main_base.as_str(),
            "token_endpoint": token,
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic", "private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
            "grant_types_supported": ["client_credentials"],
            "scopes_supported": ["system/*.read", "system/*.rs", "bulk-data", "user/*.rs"],
            "capabilities": ["client-confidential-symmetric", "client-confidential-asymmetric", "permission-v1", "permission-v2"],
        }),
    )
}

fn metadata(shared: &Shared) -> Response {
    let op = |name: &str, canonical: &str| json!({"name": name, "definition": canonical});
    let types: Vec<Value> =
        super::ResourceType::ALL.iter().map(|t| json!({"type": t.name(), "interaction": []})).collect();
    let group = json!({"type": "Group", "interaction": [{"code": "read"}], "operation": [
        op("export", "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"),
        op("davinci-data-export", "http://hl7.org/fhir/us/davinci-pdex/OperationDefinition/GroupExport"),
        op("bulk-member-match", "http://hl7.org/fhir/us/davinci-pdex/OperationDefinition/BulkMemberMatch"),
    ]});
    let mut resources = vec![
        json!({"type": "Patient", "operation": [op("export", "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export")]}),
    ];
    resources.push(group);
    resources.extend(types.into_iter().filter(|t| t["type"] != "Patient"));
    json_response(
        StatusCode::OK,
        FHIR_JSON,
        &json!({
            "resourceType": "CapabilityStatement",
            "status": "active",
            "date": "2025-01-01",
            "kind": "instance",
            "software": {"name": "oneup-bulk sandbox", "version": env!("CARGO_PKG_VERSION")},
            "implementation": {"description": "oneup-bulk local Bulk Data sandbox (synthetic data)", "url": shared.main_base.join("fhir/").expect("static").as_str()},
            "fhirVersion": "4.0.1",
            "format": ["json"],
            "instantiates": ["http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"],
            "rest": [{
                "mode": "server",
                "security": {
                    "service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "SMART-on-FHIR"}]}],
                    "extension": [{"url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris", "extension": [
                        {"url": "token", "valueUri": shared.token_url().as_str()}]}]
                },
                "resource": resources,
                "operation": [op("export", "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export")],
            }],
        }),
    )
}
