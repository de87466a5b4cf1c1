//! Da Vinci HRex `POST /fhir/Patient/$member-match`: one member per request, answered at once. The match
//! rules are `$bulk-member-match`'s (name and birth date, or member id and birth date; see
//! `member_match.rs`). A match with a Consent that permits is `200` with `MemberIdentifier` and
//! `MemberId`; no match, and a Consent that is missing or denies, are `422` with an OperationOutcome
//! saying which, as HRex describes.

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::fhir::{FHIR_JSON, json_response, oo};
use super::member_match::{consent_permits, find_member};
use super::{Shared, auth, oneup};

const MEMBER_ID_SYSTEM: &str = "http://example.org/fhir/sid/member-id";

pub fn member_match(shared: &Shared, headers: &HeaderMap, body: &[u8]) -> Response {
    if let Some(r) = auth::unauthorized(shared, headers) {
        return r;
    }
    let input: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return oo(StatusCode::BAD_REQUEST, "invalid", format!("the body is not JSON: {e}")),
    };
    if input["resourceType"] != "Parameters" {
        return oo(StatusCode::BAD_REQUEST, "invalid", "the body must be a Parameters resource");
    }
    let param = |name: &str| -> Option<&Value> {
        input["parameter"].as_array()?.iter().find(|p| p["name"] == name).map(|p| &p["resource"])
    };
    let Some(patient) = param("MemberPatient") else {
        return oo(StatusCode::BAD_REQUEST, "required", "the MemberPatient parameter is required");
    };
    let Some(i) = find_member(shared, patient, param("CoverageToMatch")) else {
        return oo(
            StatusCode::UNPROCESSABLE_ENTITY,
            "not-found",
            "No match found: no single member has these demographics and coverage",
        );
    };
    if !consent_permits(param("Consent")) {
        return oo(
            StatusCode::UNPROCESSABLE_ENTITY,
            "business-rule",
            "The member was found, but the Consent request cannot be complied with",
        );
    }
    oneup::remember_match(shared, i);
    let d = shared.spec.demographics(i);
    json_response(
        StatusCode::OK,
        FHIR_JSON,
        &json!({"resourceType": "Parameters", "parameter": [
            {"name": "MemberIdentifier", "valueIdentifier": {
                "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MB"}]},
                "system": MEMBER_ID_SYSTEM, "value": d.member_id}},
            {"name": "MemberId", "valueReference": {"reference": format!("Patient/{}", d.id)}},
        ]}),
    )
}
