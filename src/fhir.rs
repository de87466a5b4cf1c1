//! FHIR OperationOutcome helpers shared by every stage: the text a person reads from an error body, and
//! what a server says about a fault ([`outcome_kind`]): temporary (issue code `transient` or
//! `throttled`) or not, which the Bulk Data IG makes the signal that an export itself failed.

/// What an error body says about the fault, as far as an OperationOutcome can say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomeKind {
    /// Not an OperationOutcome (an HTML page from a proxy, an empty body, anything else).
    NoOutcome,
    /// An OperationOutcome with an issue whose code is `transient` or `throttled`: try again.
    Transient,
    /// An OperationOutcome and none of its issues is `transient`/`throttled`: the server failed the
    /// request for good (the Bulk Data IG: a failed export answers with such an outcome).
    Permanent,
}

/// Classifies an error body. (Sub-codes of transient, like `exception` or `timeout`, are used loosely
/// by servers for permanent errors, so only the two codes that say "temporary" count.)
pub fn outcome_kind(body: &[u8]) -> OutcomeKind {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return OutcomeKind::NoOutcome;
    };
    if v.get("resourceType").and_then(|t| t.as_str()) != Some("OperationOutcome") {
        return OutcomeKind::NoOutcome;
    }
    let transient = v.get("issue").and_then(|i| i.as_array()).is_some_and(|issues| {
        issues.iter().any(|i| matches!(i.get("code").and_then(|c| c.as_str()), Some("transient" | "throttled")))
    });
    if transient { OutcomeKind::Transient } else { OutcomeKind::Permanent }
}

/// True when a body is an OperationOutcome with an issue whose code is `transient` or `throttled`.
pub fn is_transient_outcome(body: &[u8]) -> bool {
    outcome_kind(body) == OutcomeKind::Transient
}

/// The human text of an OperationOutcome (diagnostics, else details.text, else code), or the body's start.
pub fn outcome_text(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        if let Some(issues) = v.get("issue").and_then(|i| i.as_array()) {
            let texts: Vec<String> = issues
                .iter()
                .filter_map(|i| {
                    i.get("diagnostics")
                        .or_else(|| i.get("details").and_then(|d| d.get("text")))
                        .or_else(|| i.get("code"))
                        .and_then(|t| t.as_str())
                        .map(str::to_string)
                })
                .collect();
            if !texts.is_empty() {
                return texts.join("; ");
            }
        }
        if let Some(d) = v.get("error_description").or_else(|| v.get("error")).and_then(|d| d.as_str()) {
            return d.to_string();
        }
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]).trim().to_string();
    if text.is_empty() { "(empty body)".into() } else { text }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_outcomes_and_their_text() {
        let oo = br#"{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"transient","diagnostics":"busy"}]}"#;
        assert!(is_transient_outcome(oo));
        assert_eq!(outcome_text(oo), "busy");
        let fatal = br#"{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"not-supported","details":{"text":"no _typeFilter"}}]}"#;
        assert!(!is_transient_outcome(fatal));
        assert_eq!(outcome_text(fatal), "no _typeFilter");
        assert_eq!(outcome_text(br#"{"error":"invalid_client","error_description":"bad secret"}"#), "bad secret");
        assert_eq!(outcome_text(b"<html>oops</html>"), "<html>oops</html>");
        assert!(!is_transient_outcome(b"not json"));
    }

    #[test]
    fn outcome_kinds() {
        let oo = |code: &str| {
            format!(r#"{{"resourceType":"OperationOutcome","issue":[{{"severity":"error","code":"{code}"}}]}}"#)
        };
        assert_eq!(outcome_kind(oo("transient").as_bytes()), OutcomeKind::Transient);
        assert_eq!(outcome_kind(oo("throttled").as_bytes()), OutcomeKind::Transient);
        for code in ["exception", "processing", "timeout", "not-found"] {
            assert_eq!(outcome_kind(oo(code).as_bytes()), OutcomeKind::Permanent, "{code}");
        }
        let mixed = br#"{"resourceType":"OperationOutcome","issue":[{"code":"exception"},{"code":"transient"}]}"#;
        assert_eq!(outcome_kind(mixed), OutcomeKind::Transient);
        assert_eq!(outcome_kind(br#"{"resourceType":"OperationOutcome"}"#), OutcomeKind::Permanent);
        for body in [&b""[..], b"<html>502 Bad Gateway</html>", br#"{"resourceType":"Bundle"}"#, b"[]"] {
            assert_eq!(outcome_kind(body), OutcomeKind::NoOutcome);
        }
    }
}
