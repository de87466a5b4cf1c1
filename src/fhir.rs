//! FHIR OperationOutcome helpers shared by every stage: the text a person reads from an error body, and
//! whether a server says a fault is temporary (issue code `transient` or `throttled`).

/// True when a body is an OperationOutcome with an issue whose code is `transient` or `throttled`. (Other
/// sub-codes of transient, like `exception`, are used loosely by servers for permanent errors; a 5xx
/// carrying them is retried anyway by its status.)
pub fn is_transient_outcome(body: &[u8]) -> bool {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return false;
    };
    v.get("resourceType").and_then(|t| t.as_str()) == Some("OperationOutcome")
        && v.get("issue").and_then(|i| i.as_array()).is_some_and(|issues| {
            issues.iter().any(|i| matches!(i.get("code").and_then(|c| c.as_str()), Some("transient" | "throttled")))
        })
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
}
