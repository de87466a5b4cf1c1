//! FHIR response helpers: OperationOutcomes, JSON responses, instants, `Retry-After`.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};
use time::OffsetDateTime;

pub const FHIR_JSON: &str = "application/fhir+json";
pub const NDJSON: &str = "application/fhir+ndjson";

pub fn outcome(severity: &str, code: &str, diagnostics: &str) -> Value {
    json!({
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "diagnostics": diagnostics}]
    })
}

/// An error answer: `status` with an OperationOutcome (`severity: error`).
pub fn oo(status: StatusCode, code: &str, diagnostics: impl AsRef<str>) -> Response {
    json_response(status, FHIR_JSON, &outcome("error", code, diagnostics.as_ref()))
}

pub fn json_response(status: StatusCode, content_type: &'static str, body: &Value) -> Response {
    let mut r = Response::new(Body::from(body.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

pub fn empty(status: StatusCode) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = status;
    r
}

/// How status polls (and 429/503 answers) say when to come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAfterStyle {
    /// `Retry-After: N`
    Seconds(u64),
    /// `Retry-After: <HTTP-date N seconds from now>`
    HttpDate(u64),
    /// No `Retry-After` header.
    None,
}

/// Add `Retry-After` in the configured style (nothing for [`RetryAfterStyle::None`]).
pub fn retry_after(mut r: Response, style: RetryAfterStyle) -> Response {
    let value = match style {
        RetryAfterStyle::Seconds(n) => n.to_string(),
        RetryAfterStyle::HttpDate(n) => {
            httpdate::fmt_http_date(std::time::SystemTime::now() + std::time::Duration::from_secs(n))
        }
        RetryAfterStyle::None => return r,
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// A FHIR instant, or a bare date (taken as midnight UTC): both are seen in `_since` in the wild. The
/// sandbox parses on its own (not with the client's parser), so a parsing bug cannot pass on both sides.
pub fn parse_instant(s: &str) -> Option<OffsetDateTime> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Some(t);
    }
    let (y, rest) = s.split_once('-')?;
    let (m, d) = rest.split_once('-')?;
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let month = time::Month::try_from(m.parse::<u8>().ok()?).ok()?;
    let date = time::Date::from_calendar_date(y.parse().ok()?, month, d.parse().ok()?).ok()?;
    Some(date.midnight().assume_utc())
}

/// RFC 3339 with milliseconds, in UTC: `2025-03-01T12:00:00.123Z`.
pub fn fmt_instant(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    t.format(time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"))
        .expect("formattable instant")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_parse_and_format() {
        let t = parse_instant("2024-05-01T10:20:30.5+02:00").unwrap();
        assert_eq!(fmt_instant(t), "2024-05-01T08:20:30.500Z");
        assert_eq!(fmt_instant(parse_instant("2024-05-01").unwrap()), "2024-05-01T00:00:00.000Z");
        assert!(parse_instant("yesterday").is_none());
    }
}
