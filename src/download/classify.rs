//! Pure decisions of one download attempt, tested on exact inputs: what a response's head means given
//! what is already in the `.part` ([`classify`]), whether a body that has been read whole is the
//! file or calls for another try ([`judge_body`]), and when a file whose line count keeps disagreeing
//! with the manifest is what the server has ([`judge_mismatch`]).
//!
//! Statuses that never reach [`classify`]: the session retries 408, 429, 500, 502, 503 and 504 with
//! backoff (then fails with `Error::Transient`), renews the token once on a 401 to a request that carried
//! one, and follows redirects. Every other status arrives here.

use reqwest::StatusCode;
use reqwest::header::{CONTENT_ENCODING, CONTENT_RANGE, HeaderMap};

use crate::record::count_agrees;

/// What to do with a response, from its head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// 200: the body is the whole file; write the `.part` from its start.
    FromStart { gzip: bool },
    /// 206 starting where the `.part` ends (identity encoding): check the `.part` again, then append.
    Append,
    /// Drop the `.part` and try again (counts against the retries).
    Restart(String),
    /// 410, or 401/403 to a request that could not carry a token: the file link has expired, and the
    /// status URL may hand out fresh ones.
    UrlExpired,
    /// 401/403 to a request allowed the token (the session has already renewed it once on a 401).
    Refused,
    /// Any other status: the file cannot be fetched (404, 501, an unfollowed redirect…).
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
        // Gone: what a file server answers for a link past its expiry (the IG lets clients re-poll).
        410 => Decision::UrlExpired,
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
    /// Of those, the `Parameters` headers of organized output.
    pub header_lines: u64,
    /// The manifest's `count` for the file, when it gave one.
    pub manifest_count: Option<u64>,
    /// Whether the count is a contract: true for `output[]`; `error[]` and `deleted[]` counts are
    /// informative (servers copy the failed output's count there), so they never call for a retry.
    pub count_is_contract: bool,
}

/// What a body read whole amounts to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyVerdict {
    /// The whole file, and it agrees with the manifest (or its count is only informative).
    Whole,
    /// Not the whole file: try again.
    Retry(Retry),
    /// The whole file, but its line count disagrees with the manifest's: see [`judge_mismatch`].
    CountMismatch(String),
}

/// Whether a body is the whole file and agrees with the manifest.
pub fn judge_body(b: &BodyEnd) -> BodyVerdict {
    if let Some(reason) = &b.net_error {
        // A decoded gzip prefix cannot be resumed with a range over the encoded bytes.
        let retry = if b.gzip { Retry::Restart(reason.clone()) } else { Retry::Resume(reason.clone()) };
        return BodyVerdict::Retry(retry);
    }
    if let Some(n) = b.content_length
        && b.received != n
    {
        return BodyVerdict::Retry(Retry::Resume(format!("body was {} bytes, Content-Length said {n}", b.received)));
    }
    match b.manifest_count {
        Some(count) if b.count_is_contract && !count_agrees(Some(count), b.lines, b.header_lines) => {
            BodyVerdict::CountMismatch(format!("{} resources in the file, the manifest said {count}", b.lines))
        }
        _ => BodyVerdict::Whole,
    }
}

/// Full fetches that must give the same bytes before a file whose count disagrees with the manifest is
/// taken as what the server has. Two: a file still being written, or cut by a proxy, differs from one
/// fetch to the next; a server that lists a wrong count serves the same bytes every time.
pub const IDENTICAL_FETCHES: u32 = 2;

/// A whole body, by what identifies its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    pub bytes: u64,
    pub sha256: String,
}

/// Consecutive full fetches that gave the same mismatched bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Streak {
    pub fingerprint: Fingerprint,
    pub fetches: u32,
}

/// After a whole body whose count disagrees with the manifest: the streak it makes with the one before,
/// and whether the file is now proven to be what the server has ([`IDENTICAL_FETCHES`] in a row).
pub fn judge_mismatch(previous: Option<&Streak>, now: Fingerprint) -> (Streak, bool) {
    let fetches = match previous {
        Some(p) if p.fingerprint == now => p.fetches + 1,
        _ => 1,
    };
    (Streak { fingerprint: now, fetches }, fetches >= IDENTICAL_FETCHES)
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
    fn gone_is_an_expired_link_with_or_without_a_token() {
        for (token, have) in [(false, 0), (true, 0), (true, 500)] {
            assert_eq!(classify(status(410), &head(&[]), have, token), Decision::UrlExpired);
        }
    }

    #[test]
    fn other_statuses_fail() {
        // 5xx other than 500/502/503/504 reach here; those four and 408/429 are retried by the session.
        for s in [204, 302, 400, 404, 422, 501, 505] {
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
            header_lines: 0,
            manifest_count: Some(10),
            count_is_contract: true,
        }
    }

    #[test]
    fn a_whole_body_that_matches_the_manifest_is_the_file() {
        assert_eq!(judge_body(&whole()), BodyVerdict::Whole);
        assert_eq!(judge_body(&BodyEnd { content_length: None, manifest_count: None, ..whole() }), BodyVerdict::Whole);
    }

    #[test]
    fn a_cut_connection_resumes_unless_gzip() {
        let cut = BodyEnd { net_error: Some("connection reset".into()), received: 10, ..whole() };
        assert_eq!(judge_body(&cut), BodyVerdict::Retry(Retry::Resume("connection reset".into())));
        let cut_gz = BodyEnd { gzip: true, content_length: None, ..cut };
        assert_eq!(judge_body(&cut_gz), BodyVerdict::Retry(Retry::Restart("connection reset".into())));
    }

    #[test]
    fn a_short_body_resumes() {
        let short = BodyEnd { received: 999, ..whole() };
        assert_eq!(
            judge_body(&short),
            BodyVerdict::Retry(Retry::Resume("body was 999 bytes, Content-Length said 1000".into()))
        );
    }

    #[test]
    fn a_count_mismatch_is_judged_by_whether_it_repeats() {
        for lines in [9, 11] {
            let b = BodyEnd { lines, ..whole() };
            assert_eq!(
                judge_body(&b),
                BodyVerdict::CountMismatch(format!("{lines} resources in the file, the manifest said 10"))
            );
        }
    }

    #[test]
    fn error_and_deleted_counts_are_informative() {
        // The reference server writes the failed output's count (639) into the error entry.
        let b = BodyEnd { lines: 1, manifest_count: Some(639), count_is_contract: false, ..whole() };
        assert_eq!(judge_body(&b), BodyVerdict::Whole);
        // A cut body is still fetched again.
        let cut = BodyEnd { received: 10, ..b };
        assert!(matches!(judge_body(&cut), BodyVerdict::Retry(Retry::Resume(_))));
    }

    #[test]
    fn organized_counts_may_or_may_not_include_the_headers() {
        let b = |count| BodyEnd { lines: 12, header_lines: 2, manifest_count: Some(count), ..whole() };
        assert_eq!(judge_body(&b(12)), BodyVerdict::Whole);
        assert_eq!(judge_body(&b(10)), BodyVerdict::Whole);
        assert!(matches!(judge_body(&b(11)), BodyVerdict::CountMismatch(_)));
    }

    fn fp(bytes: u64, sha: &str) -> Fingerprint {
        Fingerprint { bytes, sha256: sha.into() }
    }

    #[test]
    fn the_same_bytes_twice_prove_the_file_is_what_the_server_has() {
        let (first, keep) = judge_mismatch(None, fp(0, "e3b0"));
        assert_eq!((first.fetches, keep), (1, false));
        let (second, keep) = judge_mismatch(Some(&first), fp(0, "e3b0"));
        assert_eq!((second.fetches, keep), (IDENTICAL_FETCHES, true));
    }

    #[test]
    fn different_bytes_start_the_streak_again() {
        let (first, _) = judge_mismatch(None, fp(100, "aa"));
        // Same length, other bytes; other length, same hash text (cannot happen, still not the same).
        for other in [fp(100, "bb"), fp(99, "aa")] {
            let (s, keep) = judge_mismatch(Some(&first), other.clone());
            assert_eq!((s, keep), (Streak { fingerprint: other, fetches: 1 }, false));
        }
    }
}
