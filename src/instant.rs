//! FHIR instants (RFC 3339) in one place: the job's `since`/`until`, `--since`, the state's times,
//! the manifest's `transactionTime`, and the run record's timestamps are all formatted and parsed here.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// RFC 3339 as the `time` crate writes it (the offset kept, `Z` for UTC).
pub fn format(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).expect("an OffsetDateTime formats as RFC 3339")
}

/// Now, in UTC, as RFC 3339.
pub fn now() -> String {
    format(OffsetDateTime::now_utc())
}

/// An RFC 3339 instant, or a bare date (`2024-01-31`, taken as midnight UTC).
pub fn parse(s: &str) -> Option<OffsetDateTime> {
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Some(t);
    }
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(s, &fmt).ok().map(|d| d.midnight().assume_utc())
}

/// An RFC 3339 instant only (no bare dates): what a server's `transactionTime` must be.
pub fn parse_strict(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_and_dates() {
        assert_eq!(format(parse("2024-01-31").unwrap()), "2024-01-31T00:00:00Z");
        assert_eq!(format(parse("2024-01-31T10:00:00+02:00").unwrap()), "2024-01-31T10:00:00+02:00");
        assert!(parse("yesterday").is_none());
        assert!(parse_strict("2024-01-31").is_none());
        assert!(parse_strict("2024-01-31T10:00:00.123Z").is_some());
        assert_eq!(parse("2024-01-31").unwrap().unix_timestamp(), 1_706_659_200);
        assert!(parse("2024-01-31T10:00:00").is_none(), "a zone is required");
    }
}
