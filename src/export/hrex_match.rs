//! Da Vinci HRex `$member-match`, the way 1up documents Payer-to-Payer: one `POST
//! [base]/Patient/$member-match` per member of the parameters file (its `MemberBundle`s: `MemberPatient`,
//! `CoverageToMatch`, `CoverageToLink`, `Consent`), a bounded number at once. Each answer is kept as
//! received (`member-match/NNN.json`); [`outcome`] reads it: `MemberIdentifier` / `MemberId` is a match,
//! a 422 OperationOutcome that speaks of consent is a refusal, any other refusal is no match.

use std::path::Path;
use std::time::SystemTime;

use bytes::Bytes;
use reqwest::Method;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::fhir::outcome_text;
use crate::http::MAX_SMALL_BODY;
use crate::job::{Job, MemberMatch};
use crate::record::matches::{MatchedMember, MemberMatchRecord, UnmatchedMember};
use crate::session::{Req, Session, TokenUse};

/// One member's request.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberRequest {
    /// How the member is named in messages and `run.json`: `member-1 (M00000001)`.
    pub label: String,
    /// The HRex `Parameters` body.
    pub body: Value,
}

/// What the server said about one member.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Matched { patient: Option<String>, identifier: Option<String> },
    NotMatched(String),
    ConsentRefused(String),
}

fn part<'a>(parts: &'a [Value], name: &str) -> Option<&'a Value> {
    parts.iter().find(|p| p["name"] == name)
}

/// `member-1 (M00000001)`: the MemberPatient's id, and the subscriber id it is matched by.
pub fn label(patient: &Value, coverage: Option<&Value>, n: usize) -> String {
    let id = patient["id"].as_str().map(str::to_string).unwrap_or_else(|| format!("member {n}"));
    let key = coverage.and_then(|c| c["subscriberId"].as_str()).or(patient["identifier"][0]["value"].as_str());
    match key {
        Some(k) => format!("{id} ({k})"),
        None => id,
    }
}

/// One request per `MemberBundle` of a PDex members file; a file that is already one member's HRex
/// `Parameters` (a top-level `MemberPatient`) is one request.
pub fn requests(file: &Value) -> std::result::Result<Vec<MemberRequest>, String> {
    if file["resourceType"] != "Parameters" {
        return Err("a FHIR Parameters resource is expected".into());
    }
    let params = file["parameter"].as_array().map(Vec::as_slice).unwrap_or_default();
    let bundles: Vec<&[Value]> = params
        .iter()
        .filter(|p| p["name"] == "MemberBundle")
        .map(|p| p["part"].as_array().map(Vec::as_slice).unwrap_or_default())
        .collect();
    let sets = if bundles.is_empty() && part(params, "MemberPatient").is_some() { vec![params] } else { bundles };
    if sets.is_empty() {
        return Err("no MemberBundle (or MemberPatient) parameter: nobody to match".into());
    }
    let mut out = Vec::new();
    for (i, parts) in sets.into_iter().enumerate() {
        let patient = part(parts, "MemberPatient")
            .map(|p| &p["resource"])
            .ok_or_else(|| format!("member {}: no MemberPatient", i + 1))?;
        let mut parameter = Vec::new();
        for name in ["MemberPatient", "CoverageToMatch", "CoverageToLink", "Consent"] {
            if let Some(p) = part(parts, name) {
                parameter.push(json!({"name": name, "resource": p["resource"]}));
            }
        }
        let coverage = part(parts, "CoverageToMatch").map(|p| &p["resource"]);
        out.push(MemberRequest {
            label: label(patient, coverage, i + 1),
            body: json!({"resourceType": "Parameters", "parameter": parameter}),
        });
    }
    Ok(out)
}

/// Reads one answer. `status` is the final one (after any asynchronous wait).
pub fn outcome(status: u16, body: &[u8]) -> Outcome {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    if (200..300).contains(&status) {
        let param = |name: &str| v["parameter"].as_array()?.iter().find(|p| p["name"] == name).cloned();
        let identifier = param("MemberIdentifier").and_then(|p| {
            let i = &p["valueIdentifier"];
            let value = i["value"].as_str()?;
            Some(match i["system"].as_str() {
                Some(s) => format!("{s}|{value}"),
                None => value.to_string(),
            })
        });
        let patient = param("MemberId").and_then(|p| p["valueReference"]["reference"].as_str().map(str::to_string));
        if v["resourceType"] == "Parameters" && (identifier.is_some() || patient.is_some()) {
            return Outcome::Matched { patient, identifier };
        }
        return Outcome::NotMatched(format!("HTTP {status}, but the answer names no MemberIdentifier"));
    }
    let text = outcome_text(body);
    let reason = format!("HTTP {status}: {text}");
    // HRex answers 422 both when nobody matches and when the consent cannot be complied with; only the
    // OperationOutcome tells them apart.
    if v["resourceType"] == "OperationOutcome" && v.to_string().to_lowercase().contains("consent") {
        Outcome::ConsentRefused(reason)
    } else {
        Outcome::NotMatched(reason)
    }
}

/// Sends one member's request; waits for it if the server answers asynchronously.
async fn ask(session: &Session, job: &Job, r: &MemberRequest) -> Result<(u16, Bytes)> {
    let url = job.fhir_base.join("Patient/$member-match").expect("relative");
    let req = Req {
        method: Method::POST,
        url: url.clone(),
        headers: Vec::new(),
        body: Some(Bytes::from(serde_json::to_vec(&r.body).expect("JSON serialises"))),
        token: TokenUse::AllowedOrigins,
        what: format!("$member-match {}", r.label),
    }
    .header(ACCEPT, "application/fhir+json")
    .header(CONTENT_TYPE, "application/fhir+json");
    let reply = session.send(&req, MAX_SMALL_BODY).await?;
    match reply.status.as_u16() {
        401 | 403 => Err(Error::AuthRefused {
            url: url.to_string(),
            detail: format!("HTTP {} on $member-match: {}", reply.status.as_u16(), outcome_text(&reply.body)),
        }),
        202 => {
            let status_url = super::poll::status_location(&reply.headers, &url, "$member-match")?;
            match super::poll::wait(session, &status_url, &job.poll, SystemTime::now(), |_| {}).await? {
                super::poll::Polled::Ready(b) => Ok((200, b)),
                super::poll::Polled::Gone(gone) => Err(Error::ServerRejected(format!("$member-match: {gone}"))),
            }
        }
        s => Ok((s, reply.body)),
    }
}

/// Matches every member of the parameters file, keeping each answer in `keep_dir/<dir>/NNN.json`.
pub async fn run(
    session: &Session,
    job: &Job,
    mm: &MemberMatch,
    keep_dir: &Path,
    dir: &str,
) -> Result<MemberMatchRecord> {
    let file = &mm.parameters_file;
    let text = std::fs::read(file).map_err(|e| Error::io(file, e))?;
    let v: Value = serde_json::from_slice(&text).map_err(|e| {
        Error::Usage(format!("{}: not JSON ({e}); a FHIR Parameters resource is expected", file.display()))
    })?;
    let reqs = requests(&v).map_err(|e| Error::Usage(format!("{}: {e}", file.display())))?;
    crate::private_fs::create_private_dir(&keep_dir.join(dir))?;
    let width = reqs.len().to_string().len().max(3);
    // At most `concurrency` requests at once; answers are put back in the file's order.
    let gate = tokio::sync::Semaphore::new(mm.concurrency.max(1));
    let asks = reqs.iter().map(|r| async {
        let _permit = gate.acquire().await;
        ask(session, job, r).await
    });
    let answers: Vec<Result<(u16, Bytes)>> = futures_util::future::join_all(asks).await;
    let mut rec = MemberMatchRecord { operation: "member-match".into(), members: reqs.len(), ..Default::default() };
    for (i, answer) in answers.into_iter().enumerate() {
        let (status, body) = answer?;
        let name = format!("{dir}/{:0width$}.json", i + 1);
        crate::private_fs::write_atomic(&keep_dir.join(&name), &body)?;
        rec.files.push(name);
        let member = reqs[i].label.clone();
        match outcome(status, &body) {
            Outcome::Matched { patient, identifier } => rec.matched.push(MatchedMember { member, patient, identifier }),
            Outcome::NotMatched(why) => rec.not_matched.push(UnmatchedMember { member, reason: Some(why) }),
            Outcome::ConsentRefused(why) => rec.consent_refused.push(UnmatchedMember { member, reason: Some(why) }),
        }
    }
    Ok(rec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_request_per_member_bundle() {
        let file = json!({"resourceType": "Parameters", "parameter": [
            {"name": "MemberBundle", "part": [
                {"name": "MemberPatient", "resource": {"resourceType": "Patient", "id": "member-1"}},
                {"name": "CoverageToMatch", "resource": {"resourceType": "Coverage", "subscriberId": "M1"}},
                {"name": "Consent", "resource": {"resourceType": "Consent"}},
                {"name": "Ignored", "resource": {}}]},
            {"name": "MemberBundle", "part": [
                {"name": "MemberPatient", "resource": {"resourceType": "Patient", "identifier": [{"value": "X9"}]}}]}]});
        let r = requests(&file).unwrap();
        assert_eq!(r.iter().map(|r| r.label.as_str()).collect::<Vec<_>>(), ["member-1 (M1)", "member 2 (X9)"]);
        let names: Vec<&str> =
            r[0].body["parameter"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["MemberPatient", "CoverageToMatch", "Consent"]);
        // Already one member's HRex Parameters.
        let one =
            json!({"resourceType": "Parameters", "parameter": [{"name": "MemberPatient", "resource": {"id": "p"}}]});
        assert_eq!(requests(&one).unwrap().len(), 1);
        assert!(requests(&json!({"resourceType": "Parameters", "parameter": []})).is_err());
        assert!(requests(&json!({"resourceType": "Bundle"})).is_err());
    }

    #[test]
    fn answers_are_read() {
        let matched = json!({"resourceType": "Parameters", "parameter": [
            {"name": "MemberIdentifier", "valueIdentifier": {"system": "https://old.example/id", "value": "M1"}},
            {"name": "MemberId", "valueReference": {"reference": "Patient/pt-1"}}]});
        assert_eq!(
            outcome(200, matched.to_string().as_bytes()),
            Outcome::Matched {
                patient: Some("Patient/pt-1".into()),
                identifier: Some("https://old.example/id|M1".into())
            }
        );
        let oo = |text: &str| {
            json!({"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "business-rule", "diagnostics": text}]})
                .to_string()
        };
        assert_eq!(
            outcome(422, oo("No match found").as_bytes()),
            Outcome::NotMatched("HTTP 422: No match found".into())
        );
        assert_eq!(
            outcome(422, oo("The Consent cannot be complied with").as_bytes()),
            Outcome::ConsentRefused("HTTP 422: The Consent cannot be complied with".into())
        );
        assert!(matches!(outcome(200, b"{}"), Outcome::NotMatched(_)));
        assert!(matches!(outcome(400, b"not json"), Outcome::NotMatched(_)));
    }
}
