//! `member_match:` (Payer-to-Payer): which operation matches the members (PDex `$bulk-member-match`,
//! or HRex `$member-match` one member at a time), the members file, how many requests at once, and how
//! the matched members become the export. The [`MatchPlan`] it returns sets the export's defaults even
//! when the file itself is not usable (reported here) or not checked (`--no-env`).

use super::Resolver;
use crate::job::model::{MatchOperation, MatchedExport, MemberMatch};
use crate::job::raw::RawMemberMatch;

/// What the export needs to know about the member match, whatever became of its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct MatchPlan {
    /// `member_match.parameters_file` is written.
    pub asked: bool,
    pub operation: MatchOperation,
    pub matched_export: MatchedExport,
    /// `operation` and `matched_export` were read (not held back by `--no-env`).
    pub known: bool,
}

impl Default for MatchPlan {
    fn default() -> Self {
        MatchPlan {
            asked: false,
            operation: MatchOperation::BulkMemberMatch,
            matched_export: MatchedExport::ServerScoped,
            known: true,
        }
    }
}

impl MatchPlan {
    /// `member-match` exporting the matched members by `patient` parameters (a POST).
    pub fn exports_patients(&self) -> bool {
        self.asked && self.operation == MatchOperation::MemberMatch && self.matched_export == MatchedExport::Patients
    }

    /// `bulk-member-match`: the export runs on the `MatchedMembers` group it returns.
    pub fn exports_matched_group(&self) -> bool {
        self.asked && self.operation == MatchOperation::BulkMemberMatch
    }
}

impl Resolver<'_> {
    pub(super) fn member_match(&mut self, m: RawMemberMatch) -> (MatchPlan, Option<MemberMatch>) {
        let asked = m.parameters_file.is_given();
        let operation = self.choice("member_match.operation", m.operation).unwrap_or(MatchOperation::BulkMemberMatch);
        let matched_export =
            self.choice("member_match.matched_export", m.matched_export).unwrap_or(MatchedExport::ServerScoped);
        let concurrency = self.take("member_match.concurrency", m.concurrency).unwrap_or(4);
        if !(1..=16).contains(&concurrency) {
            self.err(
                "member_match.concurrency",
                format!("concurrency {concurrency} is out of range"),
                Some("use 1 to 16 ($member-match requests at once)".into()),
            );
        }
        let known = self.checked(&["member_match.operation", "member_match.matched_export"]);
        let plan = MatchPlan { asked, operation, matched_export, known };
        if !asked {
            self.missing(
                "member_match.parameters_file",
                "member_match",
                "member_match needs `parameters_file`",
                Some("the FHIR Parameters file of MemberBundle entries to match".into()),
            );
            return (plan, None);
        }
        let Some(f) = self.opt("member_match.parameters_file", m.parameters_file) else {
            return (plan, None);
        };
        let p = self.file_path(&f);
        if !p.is_file() {
            self.err("member_match.parameters_file", format!("{} does not exist", p.display()), None);
        }
        let mm = MemberMatch { parameters_file: p, operation, concurrency: concurrency as usize, matched_export };
        (plan, Some(mm))
    }
}
