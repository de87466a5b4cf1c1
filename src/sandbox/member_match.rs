//! Da Vinci PDex `POST /fhir/Group/$bulk-member-match` and `GET /fhir/Group/{id}`.
//!
//! A `MemberBundle` matches a synthetic patient when its MemberPatient's family name, first given name and
//! birthDate agree (case-insensitive), or when its member identifier (Patient.identifier or
//! CoverageToMatch.subscriberId) and birthDate agree. A matched member whose Consent is missing or
//! denies (`provision.type = deny`) goes to `ConsentConstrainedMembers`. The `MatchedMembers` group is
//! registered, so `Group/{id}/$davinci-data-export` works on it afterwards.

use std::collections::HashMap;

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::export::{accepted, group_members};
use super::fhir::{FHIR_JSON, json_response, oo};
use super::jobs::{self, JobOutput};
use super::{Shared, auth, lock};

const GROUP_PROFILE: &str = "http://hl7.org/fhir/us/davinci-pdex/StructureDefinition/pdex-member-match-group";
const RESULT_CS: &str = "http://hl7.org/fhir/us/davinci-pdex/CodeSystem/PdexMultiMemberMatchResultCS";

pub fn bulk_member_match(shared: &Shared, path: &str, headers: &HeaderMap, body: &[u8]) -> Response {
    if let Some(r) = auth::unauthorized(shared, headers) {
        return r;
    }
    let input: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return oo(StatusCode::BAD_REQUEST, "invalid", format!("the body is not JSON: {e}"));
        }
    };
    if input.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
        return oo(StatusCode::BAD_REQUEST, "invalid", "the body must be a Parameters resource");
    }
    let bundles: Vec<&Value> = params_named(&input, "MemberBundle").collect();
    if bundles.is_empty() {
        return oo(StatusCode::BAD_REQUEST, "required", "at least one MemberBundle parameter is required");
    }
    let mut matched = Vec::new();
    let mut constrained = Vec::new();
    let mut unmatched = Vec::new();
    for b in bundles {
        let part = |name: &str| -> Option<&Value> {
            b.get("part")?
                .as_array()?
                .iter()
                .find(|p| p.get("name").and_then(Value::as_str) == Some(name))?
                .get("resource")
        };
        let Some(patient) = part("MemberPatient") else {
            return oo(StatusCode::BAD_REQUEST, "required", "every MemberBundle needs a MemberPatient part");
        };
        match find_member(shared, patient, part("CoverageToMatch")) {
            Some(i) if consent_permits(part("Consent")) => matched.push(i),
            Some(i) => constrained.push(i),
            None => unmatched.push(patient.clone()),
        }
    }
    matched.sort_unstable();
    matched.dedup();

    let id = format!(
        "mm-{}-{:06x}",
        shared.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        fastrand::u32(..0xFF_FFFF)
    );
    let matched_id = format!("{id}-matched");
    lock(&shared.groups).insert(matched_id.clone(), matched.clone());
    let refs = |v: &[u32]| -> Vec<Value> {
        v.iter().map(|i| json!({"entity": {"reference": format!("Patient/pt-{i}")}})).collect()
    };
    let contained: Vec<Value> = unmatched
        .iter()
        .enumerate()
        .map(|(n, p)| {
            let mut p = p.clone();
            p["id"] = json!(format!("nomatch-{n}"));
            p
        })
        .collect();
    let nomatch_members: Vec<Value> =
        (0..contained.len()).map(|n| json!({"entity": {"reference": format!("#nomatch-{n}")}})).collect();
    let mut nomatch = group(&format!("{id}-nonmatched"), "nomatch", nomatch_members);
    nomatch["contained"] = json!(contained);
    let result = json!({
        "resourceType": "Parameters",
        "parameter": [
            {"name": "MatchedMembers", "resource": group(&matched_id, "match", refs(&matched))},
            {"name": "NonMatchedMembers", "resource": nomatch},
            {"name": "ConsentConstrainedMembers", "resource": group(&format!("{id}-consentconstrained"), "consentconstraint", refs(&constrained))},
        ]
    });
    let prefer_async = headers.get("prefer").and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("respond-async"));
    if !prefer_async {
        return json_response(StatusCode::OK, FHIR_JSON, &result);
    }
    let url = format!("{}{}", shared.main_base.as_str().trim_end_matches('/'), path);
    let job = match shared.cfg.oneup.bulk_match_as_group_files {
        // PDex 2.2: the status URL ends in a manifest of Group NDJSON files, one per result group.
        true => jobs::insert_files(shared, url, group_files(&result)),
        false => jobs::insert(shared, url, JobOutput::Document(result)),
    };
    accepted(shared, &job)
}

/// One NDJSON file per result group (`MatchedMembers.ndjson`, …), the groups of a Parameters result.
fn group_files(result: &Value) -> Vec<std::sync::Arc<jobs::FileData>> {
    let params = result["parameter"].as_array().map(Vec::as_slice).unwrap_or_default();
    params
        .iter()
        .map(|p| {
            let mut line = p["resource"].to_string().into_bytes();
            line.push(b'\n');
            let name = format!("{}.ndjson", p["name"].as_str().unwrap_or("Group"));
            jobs::FileData::new(name, "Group", bytes::Bytes::from(line))
        })
        .collect()
}

/// `GET /fhir/Group/{id}`.
pub fn read_group(shared: &Shared, id: &str, headers: &HeaderMap) -> Response {
    if let Some(r) = auth::unauthorized(shared, headers) {
        return r;
    }
    let Some(members) = group_members(shared, id) else {
        return oo(StatusCode::NOT_FOUND, "not-found", format!("Group/{id} is not known"));
    };
    let refs = members.iter().map(|i| json!({"entity": {"reference": format!("Patient/pt-{i}")}})).collect();
    let mut g = group(id, "match", refs);
    if id == "attributed-members" {
        g["name"] = json!("Attributed members (all synthetic patients)");
        g.as_object_mut().expect("object").remove("code");
        g["meta"] = json!({});
    }
    json_response(StatusCode::OK, FHIR_JSON, &g)
}

fn group(id: &str, code: &str, members: Vec<Value>) -> Value {
    json!({
        "resourceType": "Group",
        "id": id,
        "meta": {"profile": [GROUP_PROFILE]},
        "active": true,
        "type": "person",
        "actual": true,
        "code": {"coding": [{"system": RESULT_CS, "code": code}]},
        "quantity": members.len(),
        "member": members,
    })
}

fn params_named<'a>(p: &'a Value, name: &'a str) -> impl Iterator<Item = &'a Value> {
    p.get("parameter")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(move |x| x.get("name").and_then(Value::as_str) == Some(name))
}

pub(super) fn find_member(shared: &Shared, patient: &Value, coverage: Option<&Value>) -> Option<u32> {
    let s = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_ascii_lowercase);
    let family = s(patient.pointer("/name/0/family"));
    let given = s(patient.pointer("/name/0/given/0"));
    let birth = patient.get("birthDate").and_then(Value::as_str)?;
    let mut ids: Vec<String> = patient
        .get("identifier")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|i| s(i.get("value")))
        .collect();
    ids.extend(s(coverage.and_then(|c| c.get("subscriberId"))));
    let index = shared.members_by_birth_date.get_or_init(|| {
        let mut m: HashMap<String, Vec<u32>> = HashMap::new();
        for i in 0..shared.spec.patient_count() {
            m.entry(shared.spec.demographics(i).birth_date).or_default().push(i);
        }
        m
    });
    index.get(birth)?.iter().copied().find(|&i| {
        let d = shared.spec.demographics(i);
        let by_name = family.as_deref() == Some(&d.family.to_ascii_lowercase())
            && given.as_deref() == Some(&d.given.to_ascii_lowercase());
        by_name || ids.contains(&d.member_id.to_ascii_lowercase())
    })
}

pub(super) fn consent_permits(consent: Option<&Value>) -> bool {
    consent.is_some_and(|c| c.pointer("/provision/type").and_then(Value::as_str) != Some("deny"))
}
