//! Da Vinci PDex Payer-to-Payer `$bulk-member-match` (run before the export): POST the user's
//! `Parameters` of `MemberBundle`s with `Prefer: respond-async`, wait for the result like an export's
//! status, and return the `MatchedMembers` Group to export. The result (matched, non-matched and
//! consent-constrained groups) is kept beside the run.

use std::time::SystemTime;

use bytes::Bytes;
use reqwest::Method;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderName};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::eventlog::{EventLog, LogEvent};
use crate::fhir::outcome_text;
use crate::http::MAX_SMALL_BODY;
use crate::job::{Job, MemberMatch};
use crate::progress::Event;
use crate::session::{Req, Session, TokenUse};

/// What came back: the group to export and the whole result document.
#[derive(Debug, Clone)]
pub struct MatchResult {
    pub matched_group_id: String,
    pub matched: usize,
    pub non_matched: usize,
    pub consent_constrained: usize,
    pub document: Bytes,
}

/// Reads the group ids and member counts out of a `$bulk-member-match` result.
pub fn parse_result(body: &[u8]) -> Result<MatchResult> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| Error::ServerRejected(format!("the $bulk-member-match result is not JSON: {e}")))?;
    if v["resourceType"] != "Parameters" {
        return Err(Error::ServerRejected("the $bulk-member-match result is not a Parameters resource".into()));
    }
    let group = |name: &str| -> Option<&Value> {
        v["parameter"].as_array()?.iter().find(|p| p["name"] == name).map(|p| &p["resource"])
    };
    let members = |name: &str| group(name).and_then(|g| g["member"].as_array()).map_or(0, Vec::len);
    let matched = group("MatchedMembers")
        .ok_or_else(|| Error::ServerRejected("the $bulk-member-match result has no MatchedMembers group".into()))?;
    let id = matched["id"]
        .as_str()
        .filter(|id| !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.')))
        .ok_or_else(|| Error::ServerRejected("the MatchedMembers group has no usable id".into()))?;
    Ok(MatchResult {
        matched_group_id: id.to_string(),
        matched: members("MatchedMembers"),
        non_matched: members("NonMatchedMembers"),
        consent_constrained: members("ConsentConstrainedMembers"),
        document: Bytes::copy_from_slice(body),
    })
}

/// Runs the match and waits for its result.
pub async fn run(session: &Session, job: &Job, mm: &MemberMatch) -> Result<MatchResult> {
    let body = std::fs::read(&mm.parameters_file).map_err(|e| Error::io(&mm.parameters_file, e))?;
    serde_json::from_slice::<Value>(&body).map_err(|e| {
        Error::Usage(format!(
            "{}: not JSON ({e}); a FHIR Parameters resource is expected",
            mm.parameters_file.display()
        ))
    })?;
    let url = job.fhir_base.join("Group/$bulk-member-match").expect("relative");
    let req = Req {
        method: Method::POST,
        url: url.clone(),
        headers: Vec::new(),
        body: Some(Bytes::from(body)),
        token: TokenUse::AllowedOrigins,
        what: "$bulk-member-match".into(),
    }
    .header(ACCEPT, "application/fhir+json")
    .header(CONTENT_TYPE, "application/fhir+json")
    .header(HeaderName::from_static("prefer"), "respond-async");
    let reply = session.send(&req, MAX_SMALL_BODY).await?;
    let doc = match reply.status.as_u16() {
        200 => reply.body,
        202 => {
            let status_url = super::poll::status_location(&reply.headers, &url, "$bulk-member-match")?;
            match super::poll::wait(session, &status_url, &job.poll, SystemTime::now(), |_| {}).await? {
                super::poll::Polled::Ready(b) => b,
                super::poll::Polled::Gone(gone) => {
                    return Err(Error::ServerRejected(format!("$bulk-member-match: {gone}")));
                }
            }
        }
        401 | 403 => {
            return Err(Error::AuthRefused {
                url: url.to_string(),
                detail: format!("HTTP {} on $bulk-member-match: {}", reply.status.as_u16(), outcome_text(&reply.body)),
            });
        }
        s => {
            return Err(Error::ServerRejected(format!(
                "HTTP {s} on $bulk-member-match: {}",
                outcome_text(&reply.body)
            )));
        }
    };
    parse_result(&doc)
}

/// Where the `$bulk-member-match` result is kept (the state folder while in flight, then the run folder).
pub const RESULT_FILE: &str = "member-match.json";

/// Payer-to-Payer: matches the members, keeps the result as `keep_dir/member-match.json`, and returns
/// the job that exports the `MatchedMembers` group.
pub async fn matched_members_job(
    session: &Session,
    job: &Job,
    mm: &MemberMatch,
    keep_dir: &crate::store::Dir,
    log: &EventLog,
) -> Result<Job> {
    let r = run(session, job, mm).await?;
    keep_dir.write(RESULT_FILE, &r.document).await?;
    let kept = keep_dir.label(RESULT_FILE);
    let note = format!(
        "$bulk-member-match: {} matched, {} not matched, {} consent-constrained; exporting Group/{}",
        r.matched, r.non_matched, r.consent_constrained, r.matched_group_id
    );
    session.reporter.event(&Event::Note { message: &note });
    log.write(&LogEvent::MemberMatch {
        matched: r.matched,
        non_matched: r.non_matched,
        consent_constrained: r.consent_constrained,
        group_id: &r.matched_group_id,
    });
    if r.matched == 0 {
        return Err(Error::Failed(format!("no member matched, so there is nothing to export; see {kept}")));
    }
    let mut j = job.clone();
    j.export.level = crate::job::Level::Group;
    j.export.group_id = Some(r.matched_group_id);
    Ok(j)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_groups_are_read() {
        let doc = br#"{"resourceType":"Parameters","parameter":[
            {"name":"MatchedMembers","resource":{"resourceType":"Group","id":"m-1","member":[{"entity":{"reference":"Patient/1"}}]}},
            {"name":"NonMatchedMembers","resource":{"resourceType":"Group","id":"n-1","member":[{},{}]}},
            {"name":"ConsentConstrainedMembers","resource":{"resourceType":"Group","id":"c-1"}}]}"#;
        let r = parse_result(doc).unwrap();
        assert_eq!((r.matched_group_id.as_str(), r.matched, r.non_matched, r.consent_constrained), ("m-1", 1, 2, 0));
        assert!(parse_result(br#"{"resourceType":"Parameters","parameter":[]}"#).is_err());
        let hostile =
            br#"{"resourceType":"Parameters","parameter":[{"name":"MatchedMembers","resource":{"id":"../x"}}]}"#;
        assert!(parse_result(hostile).is_err());
    }
}
