//! `export:`: level and group, the operation and its PDex export type, resource types checked against
//! R4, `_since`/`_until`, patients, the other kick-off parameters, and the rules between them: among
//! them 1up's (`provider-access`, `payer-to-payer`): population-level kick-offs are GET.

use super::Resolver;
use super::member_match::MatchPlan;
use crate::job::diag::did_you_mean;
use crate::job::fhir_types::{R4_RESOURCE_TYPES, is_r4_type};
use crate::job::model::*;
use crate::job::raw::RawExport;

/// `_outputFormat` values the downloader can read: the Bulk Data IG's NDJSON media type and its
/// abbreviations. Anything else (`text/csv`, Parquet) would be counted and checked as NDJSON.
pub const OUTPUT_FORMATS: &[&str] = &["application/fhir+ndjson", "application/ndjson", "ndjson"];

/// The short PDex export types; anything with `#` or `/` is taken as a full canonical.
const EXPORT_TYPES: &[&str] = &["provider-download", "provider-delta", "provider-snapshot", "payertopayer"];
pub const PDEX_PREFIX: &str = "hl7.fhir.us.davinci-pdex#";

impl Resolver<'_> {
    pub(super) fn export(&mut self, e: RawExport, access: Option<Access>, plan: MatchPlan) -> Option<ExportSpec> {
        let get_only = access.is_some_and(Access::get_only);
        let hrex = plan.asked && plan.operation == MatchOperation::MemberMatch;
        let default_level = match access {
            Some(Access::BulkData) | None => Level::System,
            Some(Access::PatientAccess) => Level::Patient,
            _ if plan.exports_patients() => Level::Patient,
            // 1up documents `$member-match` followed by a population-level `$export`.
            _ if hrex => Level::System,
            _ => Level::Group,
        };
        let level_given = e.level.is_given();
        let level = self.choice("export.level", e.level).unwrap_or(default_level);
        // PDex pairs `$bulk-member-match` with `$davinci-data-export`, a POST that 1up's GET-only
        // population endpoints refuse; there the matched group is exported with a GET `$export`.
        let default_op = match plan.exports_matched_group() && !get_only {
            true => Operation::DavinciDataExport,
            false => Operation::Export,
        };
        let operation = self.choice("export.operation", e.operation).unwrap_or(default_op);
        // Rules between fields run only on values that were read (`--no-env` leaves some unread).
        let level_known = self.checked(&["export.level"]);
        let op_known = self.checked(&["export.operation"]);
        let group_given = e.group_id.is_given();
        let group_id = self.opt("export.group_id", e.group_id);
        if plan.exports_patients() && level_given && level != Level::Patient && level_known && plan.known {
            self.err(
                "export.level",
                "`matched_export: patients` exports the matched members with `Patient/$export`",
                Some("remove `level`, or use `matched_export: server-scoped`".into()),
            );
        }
        if level == Level::Group && !group_given && !plan.exports_matched_group() && level_known {
            self.missing(
                "export.group_id",
                "export.level",
                "`level: group` needs `group_id`",
                Some(
                    "add `group_id: <the Group's id>` under `export:` (1up: the group of your attributed members)"
                        .into(),
                ),
            );
        }
        if level != Level::Group && group_id.is_some() && level_known {
            self.err(
                "export.group_id",
                "`group_id` is only used with `level: group`",
                Some("set `level: group`, or remove group_id".into()),
            );
        }
        let type_given = e.export_type.is_given();
        let mut export_type = self.opt("export.export_type", e.export_type);
        if plan.exports_matched_group() && !type_given && operation == Operation::DavinciDataExport {
            export_type = Some("payertopayer".into());
        }
        let export_type = match (operation, export_type) {
            (Operation::Export, Some(_)) if op_known => {
                self.err(
                    "export.export_type",
                    "`export_type` goes with `operation: davinci-data-export`",
                    Some("add `operation: davinci-data-export`".into()),
                );
                None
            }
            (Operation::DavinciDataExport, None) if op_known && !type_given => {
                self.missing(
                    "export.export_type",
                    "export.operation",
                    "`operation: davinci-data-export` needs `export_type`",
                    Some(format!("one of: {}", EXPORT_TYPES.join(", "))),
                );
                None
            }
            (Operation::DavinciDataExport, Some(t)) if t.contains('#') || t.contains('/') => Some(t),
            (Operation::DavinciDataExport, Some(t)) => {
                if EXPORT_TYPES.contains(&t.as_str()) {
                    Some(format!("{PDEX_PREFIX}{t}"))
                } else {
                    let hint = did_you_mean(&t, EXPORT_TYPES)
                        .unwrap_or_else(|| format!("one of: {}", EXPORT_TYPES.join(", ")));
                    self.err("export.export_type", format!("`{t}` is not a PDex export type"), Some(hint));
                    None
                }
            }
            _ => None,
        };
        if operation == Operation::DavinciDataExport && level != Level::Group && level_known && op_known {
            self.err(
                "export.level",
                "`$davinci-data-export` runs on a Group",
                Some("set `level: group` and `group_id`".into()),
            );
        }
        let mut types = Vec::new();
        for (path, t) in self.items("export.types", e.types) {
            let Some(t) = self.expand(&path, &t) else {
                continue;
            };
            if is_r4_type(&t) {
                types.push(t);
            } else {
                let hint = did_you_mean(&t, R4_RESOURCE_TYPES).or_else(|| {
                    Some("resource types are FHIR R4 names like Patient, Coverage, ExplanationOfBenefit".into())
                });
                self.err(&path, format!("`{t}` is not a FHIR R4 resource type"), hint);
            }
        }
        let since = match self.opt("export.since", e.since).as_deref().map(str::trim) {
            None | Some("") => Since::None,
            Some("auto") => Since::Auto,
            Some(s) => self.instant("export.since", s).map_or(Since::None, Since::At),
        };
        let until = self.opt("export.until", e.until).and_then(|s| self.instant("export.until", s.trim()));
        let mut patients = Vec::new();
        for (path, p) in self.items("export.patients", e.patients) {
            let Some(p) = self.expand(&path, &p) else {
                continue;
            };
            if p.strip_prefix("Patient/").is_some_and(|id| !id.is_empty() && !id.contains('/')) {
                patients.push(p);
            } else {
                self.err(&path, format!("`{p}` is not a Patient reference"), Some("write Patient/<id>".into()));
            }
        }
        let type_filters = self.texts("export.type_filters", e.type_filters);
        let elements = self.texts("export.elements", e.elements);
        let include_associated_data = self.texts("export.include_associated_data", e.include_associated_data);
        let method = self.choice("export.method", e.method).unwrap_or(KickoffMethod::Auto);
        let method_known = self.checked(&["export.method"]);
        let needs_post = if !patients.is_empty() {
            Some(("export.patients", "`patients`", "remove `patients`"))
        } else if operation == Operation::DavinciDataExport && op_known {
            Some(("export.operation", "`$davinci-data-export`", "use `operation: export` (a GET)"))
        } else if plan.exports_patients() && plan.known {
            Some(("member_match.matched_export", "`matched_export: patients`", "use `matched_export: server-scoped`"))
        } else {
            None
        };
        if let Some((path, what, instead)) = needs_post.filter(|_| get_only && method != KickoffMethod::Post)
            && method_known
        {
            self.err(
                path,
                format!(
                    "{what} needs a POST kick-off, and 1up answers 403 to POST on population-level exports (its documented rule: {} kick-offs are GET)",
                    access.map_or("", Access::as_str)
                ),
                Some(format!("{instead}, or set `export.method: post` for a server that accepts POST")),
            );
        } else if method == KickoffMethod::Get && (!patients.is_empty() || operation == Operation::DavinciDataExport) {
            self.err(
                "export.method",
                "`method: get` cannot send this request",
                Some("`patients` and $davinci-data-export need POST: use `method: auto`".into()),
            );
        }
        let output_format = self.opt("export.output_format", e.output_format);
        if let Some(f) = &output_format
            && !OUTPUT_FORMATS.contains(&f.as_str())
        {
            self.err(
                "export.output_format",
                format!("`{f}` is not an output format oneup-bulk can read (files are checked as NDJSON)"),
                Some(format!("allowed: {}, or leave it out for the server's default", OUTPUT_FORMATS.join(", "))),
            );
        }
        Some(ExportSpec {
            level,
            group_id,
            operation,
            export_type,
            types,
            since,
            until,
            type_filters,
            elements,
            patients,
            include_associated_data,
            output_format,
            organize_output_by: self.opt("export.organize_output_by", e.organize_output_by),
            allow_partial_manifests: self
                .take("export.allow_partial_manifests", e.allow_partial_manifests)
                .unwrap_or(false),
            method,
            lenient: self.take("export.lenient", e.lenient).unwrap_or(false),
        })
    }
}
