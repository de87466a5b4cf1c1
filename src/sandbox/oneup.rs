//! The sandbox playing 1upHealth as its documentation describes it. Always on: 1up's URL shapes,
//! `/v1/<tenant>/bulk-export/bulk-data/r4/…` (the FHIR API) and
//! `/auth/realms/<realm>/protocol/openid-connect/token` (the token endpoint), for the one tenant and
//! realm in [`OneUpMode`] (other names answer 404, as an unknown customer would). Switched on by
//! [`OneUpMode`]'s flags: GET-only population exports (POST kick-offs and DELETE answer 403), 1up's
//! header credentials (`client_id`, `client_secret`, `x-oneup-user-id: client`) accepted like a token,
//! population exports scoped to the members `$member-match` has matched, `$bulk-member-match` answering in
//! PDex 2.2 form (a manifest of Group NDJSON files), and manifest file URLs on the storage listener.
//!
//! To add a behaviour: a flag in [`OneUpMode`] (off in `Default`), and one check where the server
//! answers that calls a function here.

use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;

use super::fhir::oo;
use super::{Shared, lock};

/// How much the sandbox behaves like 1up. `Default`: 1up's URL shapes for `bison` / `dev-portal`, and
/// every behaviour flag off (the sandbox of before).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneUpMode {
    /// The tenant served at `/v1/<tenant>/bulk-export/bulk-data/r4/` (1up's sandbox tenant: `bison`).
    pub tenant: String,
    /// The realm served at `/auth/realms/<realm>/…/token` (1up's sandbox realm: `dev-portal`).
    pub realm: String,
    /// Export kick-offs answer 403 to POST, and status URLs 403 to DELETE (1up's population-level rule).
    pub get_only: bool,
    /// `client_id` + `client_secret` + `x-oneup-user-id: client` headers are accepted instead of a
    /// bearer token (the configured client's id and secret). The storage listener refuses them.
    pub client_headers: bool,
    /// System- and patient-level exports cover only the members `$member-match` has matched so far.
    pub scope_to_matched: bool,
    /// `$bulk-member-match` (asynchronous) finishes with a manifest of Group NDJSON files, PDex 2.2's
    /// form, instead of one Parameters resource.
    pub bulk_match_as_group_files: bool,
    /// Manifest file URLs point at the storage listener (another origin), as signed storage URLs do.
    pub files_on_storage: bool,
    /// A `_type` the sandbox has no data for (any name shaped like a resource type) exports nothing,
    /// as a server with an empty table does, instead of a 400.
    pub empty_unknown_types: bool,
}

impl Default for OneUpMode {
    fn default() -> Self {
        OneUpMode {
            tenant: "bison".into(),
            realm: "dev-portal".into(),
            get_only: false,
            client_headers: false,
            scope_to_matched: false,
            bulk_match_as_group_files: false,
            files_on_storage: false,
            empty_unknown_types: false,
        }
    }
}

impl OneUpMode {
    /// Every 1up behaviour on (`oneup-bulk sandbox --oneup`-style use and the 1up tests).
    pub fn all() -> Self {
        OneUpMode {
            get_only: true,
            client_headers: true,
            scope_to_matched: true,
            bulk_match_as_group_files: true,
            files_on_storage: true,
            empty_unknown_types: true,
            ..Default::default()
        }
    }
}

/// The value 1up documents for `x-oneup-user-id` with client headers.
const USER_ID: &str = "client";

/// 1up's URL shapes → the sandbox's own paths (`["fhir", …]`, `["auth", "token"]`); another tenant or
/// realm is a 404.
pub fn rewrite<'a>(shared: &Shared, segs: Vec<&'a str>) -> Result<Vec<&'a str>, Box<Response>> {
    let mode = &shared.cfg.oneup;
    match segs.as_slice() {
        ["v1", tenant, "bulk-export", "bulk-data", "r4", rest @ ..] => {
            if *tenant != mode.tenant {
                return Err(Box::new(oo(StatusCode::NOT_FOUND, "not-found", format!("no tenant {tenant:?} here"))));
            }
            Ok(std::iter::once("fhir").chain(rest.iter().copied()).collect())
        }
        ["auth", "realms", realm, "protocol", "openid-connect", "token"] => {
            if *realm != mode.realm {
                return Err(Box::new(oo(
                    StatusCode::NOT_FOUND,
                    "not-found",
                    format!("Realm {realm:?} does not exist"),
                )));
            }
            Ok(vec!["auth", "token"])
        }
        _ => Ok(segs),
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// True when the request carries any of 1up's credential headers.
pub fn carries_client_headers(headers: &HeaderMap) -> bool {
    ["client_id", "client_secret", "x-oneup-user-id"].iter().any(|h| headers.contains_key(*h))
}

/// With [`OneUpMode::client_headers`]: the request authenticates with the configured client's headers.
pub fn client_headers_ok(shared: &Shared, headers: &HeaderMap) -> bool {
    shared.cfg.oneup.client_headers
        && header(headers, "client_id") == Some(shared.cfg.client_id.as_str())
        && header(headers, "client_secret") == Some(shared.cfg.client_secret.as_str())
        && header(headers, "x-oneup-user-id") == Some(USER_ID)
}

/// With [`OneUpMode::get_only`]: the 403 a POST kick-off (or a DELETE) gets.
pub fn refuse(shared: &Shared, method: &Method) -> Option<Response> {
    let refused = *method == Method::POST || *method == Method::DELETE;
    (shared.cfg.oneup.get_only && refused).then(|| {
        oo(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("{method} is not supported on the population-level endpoint; use GET"),
        )
    })
}

/// With [`OneUpMode::scope_to_matched`]: the patients a system- or patient-level export covers.
pub fn scope(shared: &Shared) -> Option<Vec<u32>> {
    shared.cfg.oneup.scope_to_matched.then(|| lock(&shared.matched).iter().copied().collect())
}

/// Remembers a member `$member-match` has matched.
pub fn remember_match(shared: &Shared, patient: u32) {
    lock(&shared.matched).insert(patient);
}
