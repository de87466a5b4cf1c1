//! Reading OAuth 2.0 token-endpoint answers, shared by client credentials ([`crate::auth`]) and the
//! member's refresh token ([`crate::patient::tokens`]): `expires_in` in its two forms, and the error
//! text a person reads (never echoing anything we sent).

use serde::Deserialize;

use crate::fhir::outcome_text;

/// `expires_in` as a number or a numeric string (some servers send `"3600"`).
pub fn expires_in_secs(v: &Option<serde_json::Value>) -> Option<u64> {
    match v {
        Some(serde_json::Value::Number(n)) => n.as_u64().or_else(|| n.as_f64().map(|f| f.max(0.0) as u64)),
        Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    }
}

/// `error: error_description` from an OAuth error body, never echoing anything we sent.
pub fn token_error_text(body: &[u8], status: u16) -> String {
    #[derive(Deserialize)]
    struct OAuthError {
        error: Option<String>,
        error_description: Option<String>,
    }
    match serde_json::from_slice::<OAuthError>(body) {
        Ok(OAuthError { error: Some(e), error_description: Some(d) }) => format!("HTTP {status} {e}: {d}"),
        Ok(OAuthError { error: Some(e), error_description: None }) => format!("HTTP {status} {e}"),
        _ => format!("HTTP {status}: {}", outcome_text(body)),
    }
}
