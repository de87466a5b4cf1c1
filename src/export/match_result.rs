//! Reading a `$bulk-member-match` result, in either form servers send (pure functions): one
//! `Parameters` resource with the `MatchedMembers`, `NonMatchedMembers` and `ConsentConstrainedMembers`
//! groups (PDex 2.1), or — PDex 2.2 — a Bulk Data manifest whose `output` lists NDJSON files of those
//! Group resources (told apart by their PDex result code), or of such a Parameters resource.

use serde_json::Value;

use crate::error::{Error, Result};
use crate::record::matches::{MatchedMember, MemberMatchRecord, UnmatchedMember};

const RESULT_CS: &str = "http://hl7.org/fhir/us/davinci-pdex/CodeSystem/PdexMultiMemberMatchResultCS";

/// What the status URL's final answer is.
#[derive(Debug, PartialEq)]
pub enum Answer {
    /// The groups themselves.
    Groups(Groups),
    /// PDex 2.2: files to fetch, each holding Group (or Parameters) resources.
    Files { urls: Vec<String>, requires_access_token: bool },
}

/// The three result groups (each a FHIR Group resource as received).
#[derive(Debug, Default, PartialEq)]
pub struct Groups {
    pub matched: Vec<Value>,
    pub non_matched: Vec<Value>,
    pub consent_constrained: Vec<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Matched,
    NonMatched,
    ConsentConstrained,
}

fn rejected(why: impl std::fmt::Display) -> Error {
    Error::ServerRejected(format!("the $bulk-member-match result {why}"))
}

/// The answer at the status URL: a `Parameters` resource, or a manifest of result files.
pub fn read_answer(body: &[u8]) -> Result<Answer> {
    let v: Value = serde_json::from_slice(body).map_err(|e| rejected(format_args!("is not JSON: {e}")))?;
    if v["resourceType"] == "Parameters" {
        let mut g = Groups::default();
        g.add_parameters(&v)?;
        return Ok(Answer::Groups(g));
    }
    if let Some(output) = v["output"].as_array() {
        let urls = output.iter().filter_map(|o| o["url"].as_str().map(str::to_string)).collect::<Vec<_>>();
        if urls.is_empty() {
            return Err(rejected("is a manifest without output files"));
        }
        return Ok(Answer::Files { urls, requires_access_token: v["requiresAccessToken"].as_bool().unwrap_or(false) });
    }
    Err(rejected("is neither a Parameters resource nor a manifest of result files"))
}

/// Which result group a Group resource is: its PDex result code, else what its name or id says.
fn kind_of(group: &Value) -> Option<Kind> {
    let by_code = |code: &str| match code {
        "match" => Some(Kind::Matched),
        "nomatch" => Some(Kind::NonMatched),
        "consentconstraint" => Some(Kind::ConsentConstrained),
        _ => None,
    };
    let codings = group["code"]["coding"].as_array().into_iter().flatten();
    let mut any_system = None;
    for c in codings {
        let k = c["code"].as_str().and_then(by_code);
        if c["system"] == RESULT_CS && k.is_some() {
            return k;
        }
        any_system = any_system.or(k);
    }
    if any_system.is_some() {
        return any_system;
    }
    let text =
        format!("{} {}", group["name"].as_str().unwrap_or(""), group["id"].as_str().unwrap_or("")).to_lowercase();
    if text.contains("consent") {
        Some(Kind::ConsentConstrained)
    } else if text.contains("nonmatch") || text.contains("nomatch") || text.contains("non-match") {
        Some(Kind::NonMatched)
    } else if text.contains("match") {
        Some(Kind::Matched)
    } else {
        None
    }
}

impl Groups {
    fn push(&mut self, kind: Kind, g: Value) {
        match kind {
            Kind::Matched => self.matched.push(g),
            Kind::NonMatched => self.non_matched.push(g),
            Kind::ConsentConstrained => self.consent_constrained.push(g),
        }
    }

    /// The groups of a `Parameters` result (parameter names `MatchedMembers`, …).
    pub fn add_parameters(&mut self, v: &Value) -> Result<()> {
        for p in v["parameter"].as_array().into_iter().flatten() {
            let kind = match p["name"].as_str() {
                Some("MatchedMembers") => Kind::Matched,
                Some("NonMatchedMembers") => Kind::NonMatched,
                Some("ConsentConstrainedMembers") => Kind::ConsentConstrained,
                _ => continue,
            };
            self.push(kind, p["resource"].clone());
        }
        Ok(())
    }

    /// The resources of one PDex 2.2 result file: Group resources, or a Parameters result.
    pub fn add_ndjson(&mut self, file: &str, bytes: &[u8]) -> Result<()> {
        for (n, line) in bytes.split(|b| *b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let v: Value = serde_json::from_slice(line)
                .map_err(|e| rejected(format_args!("file {file} line {}: not JSON ({e})", n + 1)))?;
            match v["resourceType"].as_str() {
                Some("Parameters") => self.add_parameters(&v)?,
                Some("Group") => match kind_of(&v) {
                    Some(k) => self.push(k, v),
                    None => {
                        return Err(rejected(format_args!(
                            "file {file} line {}: a Group that is neither matched, non-matched nor consent-constrained",
                            n + 1
                        )));
                    }
                },
                other => {
                    return Err(rejected(format_args!("file {file} line {}: unexpected {other:?}", n + 1)));
                }
            }
        }
        Ok(())
    }

    /// The record of the match, and the `MatchedMembers` group's id (the export's target).
    pub fn record(&self) -> Result<(String, MemberMatchRecord)> {
        let matched = match self.matched.as_slice() {
            [g] => g,
            [] => return Err(rejected("has no MatchedMembers group")),
            more => return Err(rejected(format_args!("has {} MatchedMembers groups; one is expected", more.len()))),
        };
        let id = matched["id"]
            .as_str()
            .filter(|id| !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.')))
            .ok_or_else(|| Error::ServerRejected("the MatchedMembers group has no usable id".into()))?;
        let unmatched = |groups: &[Value]| -> Vec<UnmatchedMember> {
            groups.iter().flat_map(members).map(|member| UnmatchedMember { member, reason: None }).collect()
        };
        let matched_members: Vec<MatchedMember> = members(matched)
            .into_iter()
            .map(|m| MatchedMember {
                patient: m.starts_with("Patient/").then(|| m.clone()),
                member: m,
                identifier: None,
            })
            .collect();
        let quantity = matched["quantity"].as_u64().map(|q| q as usize);
        let rec = MemberMatchRecord {
            operation: "bulk-member-match".into(),
            matched: matched_members,
            not_matched: unmatched(&self.non_matched),
            consent_refused: unmatched(&self.consent_constrained),
            group_id: Some(id.to_string()),
            ..Default::default()
        };
        let members = rec.matched.len() + rec.not_matched.len() + rec.consent_refused.len();
        let group_size = quantity.unwrap_or(0).max(rec.matched.len());
        Ok((id.to_string(), MemberMatchRecord { members, group_size: Some(group_size), ..rec }))
    }
}

/// A group's members, each named by its reference, or — for a contained Patient (`#nomatch-0`, how
/// unmatched members come back) — by that Patient's identifier or id.
fn members(group: &Value) -> Vec<String> {
    let contained = group["contained"].as_array().map(Vec::as_slice).unwrap_or_default();
    group["member"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            let r = m["entity"]["reference"].as_str().unwrap_or("");
            let local = r.strip_prefix('#').and_then(|id| contained.iter().find(|c| c["id"] == id));
            match local {
                Some(p) => p["identifier"][0]["value"].as_str().or(p["id"].as_str()).unwrap_or(r).to_string(),
                None if r.is_empty() => m["entity"]["display"].as_str().unwrap_or("(no reference)").to_string(),
                None => r.to_string(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn group(id: &str, code: &str, members: &[&str]) -> Value {
        let m: Vec<Value> = members.iter().map(|r| json!({"entity": {"reference": r}})).collect();
        json!({"resourceType": "Group", "id": id, "code": {"coding": [{"system": RESULT_CS, "code": code}]}, "member": m})
    }

    #[test]
    fn parameters_form() {
        let doc = json!({"resourceType": "Parameters", "parameter": [
            {"name": "MatchedMembers", "resource": group("m-1", "match", &["Patient/1"])},
            {"name": "NonMatchedMembers", "resource": {"resourceType": "Group", "id": "n-1",
                "contained": [{"resourceType": "Patient", "id": "nm-0", "identifier": [{"value": "NEW3"}]}],
                "member": [{"entity": {"reference": "#nm-0"}}, {"entity": {"display": "someone"}}]}},
            {"name": "ConsentConstrainedMembers", "resource": group("c-1", "consentconstraint", &[])}]});
        let Answer::Groups(g) = read_answer(doc.to_string().as_bytes()).unwrap() else { panic!() };
        let (id, r) = g.record().unwrap();
        assert_eq!(id, "m-1");
        assert_eq!(r.matched[0].patient.as_deref(), Some("Patient/1"));
        let names: Vec<&str> = r.not_matched.iter().map(|m| m.member.as_str()).collect();
        assert_eq!(names, ["NEW3", "someone"]);
        assert_eq!((r.members, r.consent_refused.len(), r.group_size), (3, 0, Some(1)));
        let none = json!({"resourceType": "Parameters", "parameter": []}).to_string();
        let Answer::Groups(g) = read_answer(none.as_bytes()).unwrap() else { panic!() };
        assert!(g.record().is_err());
        let hostile = json!({"resourceType": "Parameters", "parameter": [{"name": "MatchedMembers", "resource": {"id": "../x"}}]});
        let Answer::Groups(g) = read_answer(hostile.to_string().as_bytes()).unwrap() else { panic!() };
        assert!(g.record().is_err());
    }

    #[test]
    fn pdex_2_2_group_files() {
        let manifest = json!({"transactionTime": "2025-01-01T00:00:00Z", "requiresAccessToken": true,
            "output": [{"type": "Group", "url": "https://s/1.ndjson"}, {"type": "Group", "url": "https://s/2.ndjson"}], "error": []});
        assert_eq!(
            read_answer(manifest.to_string().as_bytes()).unwrap(),
            Answer::Files {
                urls: vec!["https://s/1.ndjson".into(), "https://s/2.ndjson".into()],
                requires_access_token: true
            }
        );
        let mut g = Groups::default();
        let file = format!(
            "{}\n{}\n",
            group("mm-matched", "match", &["Patient/a", "Patient/b"]),
            group("x", "nomatch", &["#p"])
        );
        g.add_ndjson("1.ndjson", file.as_bytes()).unwrap();
        // Named, not coded: still told apart.
        let named = json!({"resourceType": "Group", "id": "g-consentconstrained", "member": [{"entity": {"reference": "Patient/c"}}]});
        g.add_ndjson("2.ndjson", format!("{named}\n\n").as_bytes()).unwrap();
        let (id, r) = g.record().unwrap();
        assert_eq!(
            (id.as_str(), r.matched.len(), r.not_matched.len(), r.consent_refused.len()),
            ("mm-matched", 2, 1, 1)
        );
        assert!(g.add_ndjson("3.ndjson", b"{\"resourceType\":\"Patient\"}\n").is_err());
        assert!(g.add_ndjson("3.ndjson", b"{\"resourceType\":\"Group\",\"id\":\"q\"}\n").is_err());
        assert!(read_answer(b"{\"resourceType\":\"Bundle\"}").is_err());
    }
}
