//! SMART scopes, read for one question: which resource types does a granted `scope` let us read? A
//! server that grants less than was asked (`system/Patient.read` when the export wants Coverage too)
//! often exports only what the token allows and says nothing; [`narrower_than`] turns that into a
//! warning. Pure, tested on the scope shapes servers send.

use std::collections::BTreeSet;

/// What a granted scope lets the client read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readable {
    /// A wildcard resource scope: every type.
    All,
    /// Only these types.
    Types(BTreeSet<String>),
    /// No resource scope in it at all (`bulk-data`, an opaque vendor scope): nothing can be said.
    Unknown,
}

/// Reads a granted `scope`: space-separated (RFC 6749), and `|`-separated too, as 1up writes
/// `bulk-data|user/*.rs`. Resource scopes are `system/`, `user/` or `patient/` + a type or `*` + SMART
/// v1 permissions (`read`, `*`; `write` grants no read) or v2 letters (`rs`, `cruds`; read is `r`). A
/// v2 query (`system/Observation.rs?category=laboratory`) still grants its type.
pub fn readable(granted: &str) -> Readable {
    let mut types = BTreeSet::new();
    let mut any_resource_scope = false;
    for s in granted.split(|c: char| c.is_whitespace() || c == '|').filter(|s| !s.is_empty()) {
        let s = s.split('?').next().unwrap_or(s);
        let Some((context, rest)) = s.split_once('/') else { continue };
        if !matches!(context, "system" | "user" | "patient") {
            continue;
        }
        let Some((rtype, perm)) = rest.rsplit_once('.') else { continue };
        let v2 = !perm.is_empty() && perm.chars().all(|c| "cruds".contains(c));
        let reads = match perm {
            "read" | "*" => true,
            "write" => false,
            _ if v2 => perm.contains('r'),
            _ => continue,
        };
        any_resource_scope = true;
        if !reads {
            continue;
        }
        if rtype == "*" {
            return Readable::All;
        }
        types.insert(rtype.to_string());
    }
    if any_resource_scope { Readable::Types(types) } else { Readable::Unknown }
}

/// The warning, when the granted scope cannot read every type asked for (`asked` empty: all types).
pub fn narrower_than(granted: &str, asked: &[String]) -> Option<String> {
    let Readable::Types(readable) = readable(granted) else { return None };
    let list = |v: Vec<&str>| if v.is_empty() { "no resource type".to_string() } else { v.join(", ") };
    if asked.is_empty() {
        return Some(format!(
            "the token's granted scope `{granted}` reads only {}; the export asked for all types, so others may be missing",
            list(readable.iter().map(String::as_str).collect())
        ));
    }
    let missing: Vec<&str> = asked.iter().map(String::as_str).filter(|t| !readable.contains(*t)).collect();
    (!missing.is_empty()).then(|| {
        format!(
            "the token's granted scope `{granted}` does not cover {}; the server may have left them out of the export",
            list(missing)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn types(t: &[&str]) -> Readable {
        Readable::Types(t.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn wildcards_read_everything() {
        for s in ["system/*.read", "system/*.rs", "bulk-data|user/*.rs", "openid system/*.cruds", "user/*.*"] {
            assert_eq!(readable(s), Readable::All, "{s}");
        }
    }

    #[test]
    fn named_types_and_permissions() {
        assert_eq!(readable("system/Patient.read system/Coverage.rs"), types(&["Coverage", "Patient"]));
        assert_eq!(readable("system/Observation.rs?category=laboratory"), types(&["Observation"]));
        // Write-only and search-only grants read nothing; a malformed permission is not a resource scope.
        assert_eq!(readable("system/*.write system/Patient.s"), types(&[]));
        assert_eq!(readable("system/Patient.readonly"), Readable::Unknown);
        assert_eq!(readable("bulk-data openid launch/patient offline_access"), Readable::Unknown);
        assert_eq!(readable(""), Readable::Unknown);
    }

    #[test]
    fn warnings_say_what_is_not_covered() {
        let asked: Vec<String> = ["Patient", "Coverage", "ExplanationOfBenefit"].map(String::from).to_vec();
        assert_eq!(
            narrower_than("system/Patient.read", &asked).as_deref(),
            Some(
                "the token's granted scope `system/Patient.read` does not cover Coverage, ExplanationOfBenefit; the server may have left them out of the export"
            )
        );
        assert_eq!(narrower_than("system/*.rs", &asked), None);
        assert_eq!(narrower_than("bulk-data", &asked), None);
        assert_eq!(
            narrower_than("system/Patient.rs system/Coverage.rs system/ExplanationOfBenefit.read", &asked),
            None
        );
        assert_eq!(
            narrower_than("system/Patient.rs", &[]).as_deref(),
            Some(
                "the token's granted scope `system/Patient.rs` reads only Patient; the export asked for all types, so others may be missing"
            )
        );
        assert_eq!(
            narrower_than("system/*.write", &asked[..1]).as_deref(),
            Some(
                "the token's granted scope `system/*.write` does not cover Patient; the server may have left them out of the export"
            )
        );
    }
}
