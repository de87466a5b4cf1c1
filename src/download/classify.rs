//! Pure decisions of one download attempt, tested on exact inputs: what a response's head means given
//! what is already in the `.part` ([`classify`]), and whether a body that has been read whole is the
//! file or calls for another try ([`judge_body`]).
//!
//! Statuses that never reach [`classify`]: the session retries 408, 429, 500, 502, 503 and 504 with
//! backoff (then fails with `Error::Transient`), renews the token once on a 401 to a request that carried
//! one, and follows redirects. Every other status arrives here.

use reqwest::StatusCode;
use reqwest::header::{CONTENT_ENCODING, CONTENT_RANGE, HeaderMap};

/// What to do with a response, from its head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// 200: the body is the whole file; write the `.part` from its start.
    FromStart { gzip: bool },
    /// 206 starting where the `.part` ends (identity encoding): check the `.part` again, then append.
    Append,
    /// Drop the `.part` and try again (counts against the retries).
    Restart(String),
    /// 401/403 to a request that could not carry a token: the file host's signed URL has expired.
    UrlExpired,
    /// 401/403 to a request allowed the token (the session has already renewed it once on a 401).
    Refused,
    /// Any other status: the file cannot be fetched (404, 410, 501, an unfollowed redirect…).
    Failed,
}

/// Why an attempt that did not produce a verified file deserves another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retry {
    /// Keep the `.part` and continue from its end.
    Resume(String),
    /// Delete the `.part` and start again.
    Restart(String),
}

/// Classifies a response's head. `have` is the bytes already in the `.part` (a `Range: bytes=have-`
/// with `Accept-Encoding: identity` was sent when it is above 0); `token_allowed` is whether the request
/// was allowed the bearer token (the manifest's `requiresAccessToken`): without it no token was sent,
/// so a 401/403 can only mean that the signed URL has expired.
pub fn classify(status: StatusCode, headers: &HeaderMap, have: u64, token_allowed: bool) -> Decision {
    let gzip = is_gzip(headers);
    match status.as_u16() {
        200 => Decision::FromStart { gzip },
        206 => {
            let start = headers.get(CONTENT_RANGE).and_then(|v| v.to_str().ok()).and_then(parse_content_range_start);
            if start != Some(have) {
                Decision::Restart(format!(
                    "the server answered a range request with a range starting at {start:?}, not {have}"
                ))
            } else if gzip {
                // Ranges are over the stored representation; a gzip body cannot be appended to decoded bytes.
                Decision::Restart("the server answered a range request with a gzip-encoded body".into())
            } else if have == 0 {
                // No range was asked for, yet the range is the whole file from 0: same as a 200.
                Decision::FromStart { gzip: false }
            } else {
                Decision::Append
            }
        }
        416 => Decision::Restart("range not satisfiable".into()),
        401 | 403 if !token_allowed => Decision::UrlExpired,
        401 | 403 => Decision::Refused,
        _ => Decision::Failed,
    }
}

/// Whether the body is gzip-encoded (`Content-Encoding: gzip`, any case).
fn is_gzip(headers: &HeaderMap) -> bool {
    headers.get(CONTENT_ENCODING).and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("gzip"))
}

/// `bytes 100-199/200` → 100.
pub fn parse_content_range_start(v: &str) -> Option<u64> {
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    rest.split('-').next()?.trim().parse().ok()
}

/// How a body ended, once the verifier has accepted every byte of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyEnd {
    pub gzip: bool,
    /// The connection failed before the end of the body (what arrived is on disk and hashed).
    pub net_error: Option<String>,
    /// Bytes received on the wire in this attempt.
    pub received: u64,
    /// The `Content-Length` this attempt's body was announced with (not for gzip bodies).
    pub content_length: Option<u64>,
    /// Resources (non-blank lines) in the whole file, the earlier `.part` included.
    pub lines: u64,
    /// The manifest's `count` for the file, when it gave one.
    pub manifest_count: Option<u64>,
}

/// `None` when the body is the whole file and agrees with the manifest, else the retry it calls for.
pub fn judge_body(b: &BodyEnd) -> Option<Retry> {
    if let Some(reason) = &b.net_error {
        // A decoded gzip prefix cannot be resumed with a range over the encoded bytes.
        return Some(if b.gzip { Retry::Restart(reason.clone()) } else { Retry::Resume(reason.clone()) });
    }
    if let Some(n) = b.content_length
        && b.received != n
    {
        return Some(Retry::Resume(format!("body was {} bytes, Content-Length said {n}", b.received)));
    }
    if let Some(count) = b.manifest_count
        && b.lines != count
    {
        return Some(Retry::Restart(format!("{} resources in the file, the manifest said {count}", b.lines)));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn head(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    fn status(s: u16) -> StatusCode {
        StatusCode::from_u16(s).unwrap()
    }

    #[test]
    fn content_range_start() {
        assert_eq!(parse_content_range_start("bytes 100-199/200"), Some(100));
        assert_eq!(parse_content_range_start("bytes 0-0/*"), Some(0));
        assert_eq!(parse_content_range_start("items 1-2/3"), None);
        assert_eq!(parse_content_range_start("bytes */200"), None);
    }

    #[test]
    fn ok_is_the_whole_file_whatever_the_part_holds() {
        for have in [0, 500] {
            assert_eq!(classify(status(200), &head(&[]), have, true), Decision::FromStart { gzip: false });
            let gz = head(&[("content-encoding", "GZip")]);
            assert_eq!(classify(status(200), &gz, have, false), Decision::FromStart { gzip: true });
        }
        let br = head(&[("content-encoding", "br")]);
        assert_eq!(classify(status(200), &br, 0, true), Decision::FromStart { gzip: false });
    }

    #[test]
    fn partial_content_appends_only_from_the_end_of_the_part() {
        let h = head(&[("content-range", "bytes 10000-19999/20000")]);
        assert_eq!(classify(status(206), &h, 10_000, true), Decision::Append);
        assert_eq!(
            classify(status(206), &h, 9_999, true),
            Decision::Restart(
                "the server answered a range request with a range starting at Some(10000), not 9999".into()
            )
        );
        assert_eq!(
            classify(status(206), &head(&[]), 10_000, true),
            Decision::Restart("the server answered a range request with a range starting at None, not 10000".into())
        );
        let from_zero = head(&[("content-range", "bytes 0-19999/20000")]);
        assert_eq!(classify(status(206), &from_zero, 0, true), Decision::FromStart { gzip: false });
    }

    #[test]
    fn partial_content_in_gzip_is_started_again() {
        let h = head(&[("content-range", "bytes 100-199/200"), ("content-encoding", "gzip")]);
        assert_eq!(
            classify(status(206), &h, 100, true),
            Decision::Restart("the server answered a range request with a gzip-encoded body".into())
        );
    }

    #[test]
    fn range_not_satisfiable_is_started_again() {
        assert_eq!(classify(status(416), &head(&[]), 100, true), Decision::Restart("range not satisfiable".into()));
    }

    #[test]
    fn refusals_are_expired_urls_only_without_a_token() {
        for s in [401, 403] {
            assert_eq!(classify(status(s), &head(&[]), 0, false), Decision::UrlExpired, "{s}");
            assert_eq!(classify(status(s), &head(&[]), 0, true), Decision::Refused, "{s}");
        }
    }

    #[test]
    fn other_statuses_fail() {
        // 5xx other than 500/502/503/504 reach here; those four and 408/429 are retried by the session.
        for s in [204, 302, 400, 404, 410, 422, 501, 505] {
            for token in [false, true] {
                assert_eq!(classify(status(s), &head(&[]), 0, token), Decision::Failed, "{s}");
                assert_eq!(classify(status(s), &head(&[]), 100, token), Decision::Failed, "{s}");
            }
        }
    }

    fn whole() -> BodyEnd {
        BodyEnd {
            gzip: false,
            net_error: None,
            received: 1000,
            content_length: Some(1000),
            lines: 10,
            manifest_count: Some(10),
        }
    }

    #[test]
    fn a_whole_body_that_matches_the_manifest_is_the_file() {
        assert_eq!(judge_body(&whole()), None);
        assert_eq!(judge_body(&BodyEnd { content_length: None, manifest_count: None, ..whole() }), None);
    }

    #[test]
    fn a_cut_connection_resumes_unless_gzip() {
        let cut = BodyEnd { net_error: Some("connection reset".into()), received: 10, ..whole() };
        assert_eq!(judge_body(&cut), Some(Retry::Resume("connection reset".into())));
        let cut_gz = BodyEnd { gzip: true, content_length: None, ..cut };
        assert_eq!(judge_body(&cut_gz), Some(Retry::Restart("connection reset".into())));
    }

    #[test]
    fn a_short_body_resumes() {
        let short = BodyEnd { received: 999, ..whole() };
        assert_eq!(judge_body(&short), Some(Retry::Resume("body was 999 bytes, Content-Length said 1000".into())));
    }

    #[test]
    fn a_count_mismatch_starts_again() {
        for lines in [9, 11] {
            let b = BodyEnd { lines, ..whole() };
            assert_eq!(
                judge_body(&b),
                Some(Retry::Restart(format!("{lines} resources in the file, the manifest said 10")))
            );
        }
    }
}
