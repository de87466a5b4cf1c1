//! The member match in `run.json` (Payer-to-Payer): who was matched, who was not, who refused consent,
//! and where the server's answers are kept; the summary lines that list them, and the warnings the
//! tool can give from them (1up documents at most 10,000 members in a Group). Pure data and text.

use serde::{Deserialize, Serialize};

use super::Problem;
use crate::job::ONEUP_GROUP_LIMIT;

/// `run.json` → `member_match`. Field names are a stable interface, like the rest of `run.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MemberMatchRecord {
    /// `member-match` (HRex, one request per member) or `bulk-member-match` (PDex).
    pub operation: String,
    /// Members asked about (`member-match`: the parameters file's; `bulk-member-match`: the result's).
    pub members: usize,
    pub matched: Vec<MatchedMember>,
    pub not_matched: Vec<UnmatchedMember>,
    pub consent_refused: Vec<UnmatchedMember>,
    /// `bulk-member-match`: the `MatchedMembers` group the export ran on, and its size as the server
    /// gave it (`quantity` or its members).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_size: Option<usize>,
    /// The server's answers, as received, relative to the run folder.
    pub files: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MatchedMember {
    /// How the member is named in the parameters file (`member-1 (M00000001)`) or the result.
    pub member: String,
    /// The previous payer's patient, `Patient/<id>` (HRex `MemberId`, or the group's entity).
    pub patient: Option<String>,
    /// HRex `MemberIdentifier`, `system|value`.
    pub identifier: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UnmatchedMember {
    pub member: String,
    /// The server's reason (its OperationOutcome's text), when it gave one.
    pub reason: Option<String>,
}

/// At most this many members are named per list in the summary; `run.json` has them all.
const LISTED: usize = 10;

impl MemberMatchRecord {
    /// Warnings for `run.json` and the summary: a match bigger than a 1up Group can hold.
    pub fn warnings(&self) -> Vec<Problem> {
        let mut w = Vec::new();
        let size = self.group_size.unwrap_or(0).max(self.matched.len());
        if size > ONEUP_GROUP_LIMIT {
            let what = match &self.group_id {
                Some(g) => format!("the matched group Group/{g} has {size} members"),
                None => format!("{size} members matched"),
            };
            w.push(Problem {
                file: None,
                line: None,
                message: format!(
                    "{what}: more than the {ONEUP_GROUP_LIMIT} a 1up Group holds (1up's documented limit); the export may not cover them all: split the members file"
                ),
            });
        }
        w
    }

    /// The summary's lines, indented like the rest of it.
    pub fn summary_lines(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "  member match (${}): {} of {} matched, {} not matched, {} consent refused{}",
            self.operation,
            self.matched.len(),
            self.members,
            self.not_matched.len(),
            self.consent_refused.len(),
            self.files
                .first()
                .map(|f| format!("; answers in {}", f.split('/').next().unwrap_or(f)))
                .unwrap_or_default()
        )];
        for (label, list) in [("not matched", &self.not_matched), ("consent refused", &self.consent_refused)] {
            for m in list.iter().take(LISTED) {
                let reason = m.reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default();
                lines.push(format!("    {label}: {}{reason}", m.member));
            }
            if list.len() > LISTED {
                lines.push(format!("    … and {} more {label} (run.json)", list.len() - LISTED));
            }
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unmatched(m: &str, r: Option<&str>) -> UnmatchedMember {
        UnmatchedMember { member: m.into(), reason: r.map(str::to_string) }
    }

    #[test]
    fn summary_lists_who_was_not_matched() {
        let r = MemberMatchRecord {
            operation: "member-match".into(),
            members: 3,
            matched: vec![MatchedMember {
                member: "member-1".into(),
                patient: Some("Patient/pt-1".into()),
                identifier: None,
            }],
            not_matched: vec![unmatched("member-2 (M2)", Some("no match found"))],
            consent_refused: vec![unmatched("member-3", None)],
            files: vec!["member-match/001.json".into()],
            ..Default::default()
        };
        assert_eq!(
            r.summary_lines(),
            [
                "  member match ($member-match): 1 of 3 matched, 1 not matched, 1 consent refused; answers in member-match",
                "    not matched: member-2 (M2): no match found",
                "    consent refused: member-3",
            ]
        );
        assert!(r.warnings().is_empty());
    }

    #[test]
    fn long_lists_are_cut_and_big_groups_warned_about() {
        let r = MemberMatchRecord {
            operation: "bulk-member-match".into(),
            members: 10_012,
            not_matched: (0..12).map(|i| unmatched(&format!("m{i}"), None)).collect(),
            group_id: Some("g1".into()),
            group_size: Some(10_001),
            ..Default::default()
        };
        let lines = r.summary_lines();
        assert_eq!(lines.len(), 1 + 10 + 1);
        assert_eq!(lines[11], "    … and 2 more not matched (run.json)");
        assert_eq!(
            r.warnings()[0].message,
            "the matched group Group/g1 has 10001 members: more than the 10000 a 1up Group holds (1up's documented limit); the export may not cover them all: split the members file"
        );
    }
}
