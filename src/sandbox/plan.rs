//! The health plan of Patient Access, as the sandbox plays it (1up's plan auth server, as its
//! documentation describes it): the authorize endpoint, which approves at once as a configured member
//! or shows a one-click page of members; the token endpoint with the `authorization_code` grant (PKCE
//! S256 verified, codes single-use with a lifetime) and the `refresh_token` grant (rotating: the old
//! refresh token stops working); and the member-scoped access tokens the FHIR reads in
//! [`super::member_data`] check.
//!
//! ```text
//! GET  /oauth2/authorize/{system-id}   response_type=code, client_id, redirect_uri, scope, state, aud,
//!                                      code_challenge, code_challenge_method=S256 [, member=pt-N]
//! POST /oauth2/token                   grant_type=authorization_code | refresh_token
//! ```

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use base64::Engine as _;
use serde_json::json;
use url::Url;

use super::fhir::{empty, json_response};
use super::{Shared, lock};

/// How the plan behaves. Defaults follow 1up's documentation: 5-minute codes, 2-hour tokens.
#[derive(Debug, Clone)]
pub struct PlanConfig {
    /// The `{system-id}` of the authorize URL (1up's demo plan: `demoplan`).
    pub system_id: String,
    /// The member who logs in at once when the authorize endpoint is called; `None`: a page with one
    /// link per member, for a person to click.
    pub member: Option<String>,
    pub code_ttl: Duration,
    pub token_ttl: Duration,
    /// Each refresh answers with a new refresh token and forgets the old one.
    pub rotate_refresh_tokens: bool,
    /// Resources per page of `$everything` and searches (1up: 10).
    pub page_size: usize,
    /// Say this `expires_in` instead of `token_ttl` (tokens still live `token_ttl`): `Some(0)` makes a
    /// client renew before every request, never after a 401.
    pub expires_in: Option<u64>,
}

impl Default for PlanConfig {
    fn default() -> Self {
        PlanConfig {
            system_id: "demoplan".into(),
            member: None,
            code_ttl: Duration::from_secs(300),
            token_ttl: Duration::from_secs(7200),
            rotate_refresh_tokens: true,
            page_size: 10,
            expires_in: None,
        }
    }
}

struct Code {
    client_id: String,
    redirect_uri: String,
    challenge: String,
    patient: String,
    scope: String,
    issued: Instant,
}

struct Grant {
    client_id: String,
    patient: String,
    scope: String,
}

/// Codes, refresh tokens and access tokens issued so far.
#[derive(Default)]
pub(crate) struct PlanState {
    codes: Mutex<HashMap<String, Code>>,
    refresh: Mutex<HashMap<String, Grant>>,
    access: Mutex<HashMap<String, (String, Instant)>>,
}

fn random_token() -> String {
    std::iter::repeat_with(fastrand::alphanumeric).take(40).collect()
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut r = json_response(status, "application/json", &json!({"error": error, "error_description": description}));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn redirect(to: &Url) -> Response {
    let mut r = empty(StatusCode::FOUND);
    r.headers_mut().insert(header::LOCATION, HeaderValue::from_str(to.as_str()).expect("a URL is a header value"));
    r
}

fn page(status: StatusCode, html: String) -> Response {
    let mut r = Response::new(axum::body::Body::from(html));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    r
}

/// `GET /oauth2/authorize/{system}`.
pub fn authorize(shared: &Shared, system: &str, query: Option<&str>) -> Response {
    let cfg = &shared.cfg.plan;
    if system != cfg.system_id {
        return page(StatusCode::NOT_FOUND, format!("<p>no health plan system {system:?} here</p>"));
    }
    let q: HashMap<String, String> = url::form_urlencoded::parse(query.unwrap_or("").as_bytes()).into_owned().collect();
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
    // Until the redirect URI is known to be the client's, errors are shown, not redirected (RFC 6749 §4.1.2.1).
    if get("client_id") != shared.cfg.client_id {
        return page(StatusCode::BAD_REQUEST, "<p>unknown client_id</p>".into());
    }
    let Ok(mut back) = Url::parse(get("redirect_uri")) else {
        return page(StatusCode::BAD_REQUEST, "<p>redirect_uri missing or not a URL</p>".into());
    };
    let fail = |mut back: Url, error: &str, description: &str| {
        back.query_pairs_mut().append_pair("error", error).append_pair("error_description", description);
        if let Some(s) = q.get("state") {
            back.query_pairs_mut().append_pair("state", s);
        }
        redirect(&back)
    };
    if get("response_type") != "code" {
        return fail(back, "unsupported_response_type", "response_type must be code");
    }
    if get("code_challenge").is_empty() || get("code_challenge_method") != "S256" {
        return fail(back, "invalid_request", "PKCE is required: code_challenge with code_challenge_method S256");
    }
    let fhir_base = shared.main_base.join("fhir/").expect("static path");
    if get("aud").trim_end_matches('/') != fhir_base.as_str().trim_end_matches('/') {
        return fail(back, "invalid_request", "aud is not this plan's FHIR base URL");
    }
    let member = q.get("member").cloned().or_else(|| cfg.member.clone());
    let Some(member) = member else {
        return choose_member(shared, query.unwrap_or(""));
    };
    if shared.spec.patient_index(&member).is_none() {
        return fail(back, "access_denied", "no such member");
    }
    let code = random_token();
    lock(&shared.plan.codes).insert(
        code.clone(),
        Code {
            client_id: get("client_id").into(),
            redirect_uri: get("redirect_uri").into(),
            challenge: get("code_challenge").into(),
            patient: member,
            scope: get("scope").into(),
            issued: Instant::now(),
        },
    );
    back.query_pairs_mut().append_pair("code", &code);
    if let Some(s) = q.get("state") {
        back.query_pairs_mut().append_pair("state", s);
    }
    redirect(&back)
}

/// The one-click login page: a link per member (the first ten), each approving as that member.
fn choose_member(shared: &Shared, query: &str) -> Response {
    let mut html = String::from(
        "<!doctype html><meta charset=utf-8><title>Sandbox health plan</title><h1>Sandbox health plan: log in as</h1><ul>",
    );
    let query = query.replace('&', "&amp;").replace('"', "%22");
    for i in 0..shared.spec.patient_count().min(10) {
        let d = shared.spec.demographics(i);
        html.push_str(&format!(
            "<li><a href=\"?{query}&amp;member={id}\">{} {} (member {}, {id})</a></li>",
            d.given,
            d.family,
            d.member_id,
            id = d.id
        ));
    }
    html.push_str("</ul><p>Synthetic members; no real data.</p>");
    page(StatusCode::OK, html)
}

/// `POST /oauth2/token`.
pub fn token(shared: &Shared, headers: &HeaderMap, body: &[u8]) -> Response {
    if shared.faults.take(|f| &mut f.token_500) {
        return oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "injected fault: token_500");
    }
    let form: HashMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    let cfg = &shared.cfg;
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| super::auth::parse_basic(b.trim()));
    let client_ok = match basic {
        Some((id, secret)) => id == cfg.client_id && secret == cfg.client_secret,
        None => get("client_id") == cfg.client_id && get("client_secret") == cfg.client_secret,
    };
    if !client_ok {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "client authentication failed");
    }
    let (patient, scope, refresh) = match get("grant_type") {
        "authorization_code" => {
            let Some(c) = lock(&shared.plan.codes).remove(get("code")) else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "unknown or already used authorization code",
                );
            };
            if c.issued.elapsed() > cfg.plan.code_ttl {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "the authorization code has expired");
            }
            if c.redirect_uri != get("redirect_uri") || c.client_id != cfg.client_id {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "redirect_uri does not match the authorization request",
                );
            }
            let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, get("code_verifier").as_bytes());
            if base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref()) != c.challenge {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "PKCE verification failed: code_verifier does not match",
                );
            }
            let rt = random_token();
            lock(&shared.plan.refresh).insert(
                rt.clone(),
                Grant { client_id: c.client_id, patient: c.patient.clone(), scope: c.scope.clone() },
            );
            (c.patient, c.scope, rt)
        }
        "refresh_token" => {
            if shared.faults.get().refuse_refresh {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "the member revoked this app's access (injected fault: refuse_refresh)",
                );
            }
            let mut grants = lock(&shared.plan.refresh);
            let old = get("refresh_token");
            let Some(g) = grants.get(old).filter(|g| g.client_id == cfg.client_id) else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "unknown, rotated or revoked refresh token",
                );
            };
            let (patient, scope) = (g.patient.clone(), g.scope.clone());
            let rt = if cfg.plan.rotate_refresh_tokens {
                let g = grants.remove(old).expect("found above");
                let rt = random_token();
                grants.insert(rt.clone(), g);
                rt
            } else {
                old.to_string()
            };
            (patient, scope, rt)
        }
        _ => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "grant_type must be authorization_code or refresh_token",
            );
        }
    };
    let access = random_token();
    let ttl = cfg.plan.token_ttl;
    lock(&shared.plan.access).insert(access.clone(), (patient.clone(), Instant::now() + ttl));
    oauth_ok(json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": cfg.plan.expires_in.unwrap_or(ttl.as_secs_f64().ceil().max(1.0) as u64),
        "refresh_token": refresh,
        "patient": patient,
        "scope": scope,
    }))
}

fn oauth_ok(v: serde_json::Value) -> Response {
    let mut r = json_response(StatusCode::OK, "application/json", &v);
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
}

/// The member a request's access token was issued for, or the 401 to answer.
pub fn member_of(shared: &Shared, headers: &HeaderMap) -> Result<String, Box<Response>> {
    let mut tokens = lock(&shared.plan.access);
    if shared.faults.take_expire_tokens() {
        tokens.clear();
    }
    let why = match bearer(headers).map(|t| tokens.get(t)) {
        Some(Some((patient, exp))) if *exp > Instant::now() => return Ok(patient.clone()),
        Some(Some(_)) => "access token expired",
        Some(None) => "unknown or revoked access token",
        None => "missing bearer token",
    };
    let mut r = super::fhir::oo(StatusCode::UNAUTHORIZED, "login", why);
    r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer error=\"invalid_token\""));
    Err(Box::new(r))
}

/// Forgets a member access token (the `reject_token_on` fault).
pub fn revoke(shared: &Shared, headers: &HeaderMap) {
    if let Some(t) = bearer(headers) {
        lock(&shared.plan.access).remove(t);
    }
}
