//! `GET /files/{job}/{file}`: NDJSON bytes, zero-copy from the generated `Bytes`, with Range, gzip,
//! the storage-origin redirect, and the download faults (cut connection, stall, short body, 500, 410, a
//! file still being written).

use std::io::Write;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use futures_util::StreamExt;

use super::chaos::BodyFault;
use super::fhir::{NDJSON, oo};
use super::jobs::{self, FileData};
use super::{Listener, Shared, auth};

/// `chaos` is the request's draw in chaos mode (its body may be cut or slowed).
pub async fn serve(
    shared: Arc<Shared>,
    listener: Listener,
    job: &str,
    name: &str,
    headers: &HeaderMap,
    chaos: Option<super::chaos::FileDraw>,
) -> Response {
    // 1up's header credentials count as a credential like a bearer token.
    let has_auth = headers.contains_key(header::AUTHORIZATION) || super::oneup::carries_client_headers(headers);
    match listener {
        Listener::Main => {
            if shared.cfg.requires_access_token {
                if let Some(r) = auth::unauthorized(&shared, headers) {
                    return r;
                }
            } else if has_auth && shared.faults.get().files_reject_authorization.unwrap_or(true) {
                return reject_authorization();
            }
        }
        // Signed-URL storage refuses a second credential, so a leaked bearer token is loud, not silent.
        Listener::Storage if has_auth => return reject_authorization(),
        Listener::Storage => {}
    }
    let Some(file) = jobs::files_of(&shared, job).and_then(|f| f.find(name)) else {
        return oo(StatusCode::NOT_FOUND, "not-found", format!("no file {name} in export {job}"));
    };
    if listener == Listener::Main && shared.faults.get().redirect_files_to_other_origin {
        let sig: String = std::iter::repeat_with(fastrand::alphanumeric).take(24).collect();
        let to = shared
            .storage_base
            .join(&format!("files/{job}/{name}?X-Amz-Expires=3600&X-Amz-Signature={sig}"))
            .expect("URL-safe names");
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::TEMPORARY_REDIRECT;
        r.headers_mut().insert(header::LOCATION, HeaderValue::from_str(to.as_str()).expect("ascii URL"));
        return r;
    }
    if shared.faults.take(|f| &mut f.file_403) {
        // What S3 and friends answer for an expired signed URL.
        return oo(StatusCode::FORBIDDEN, "security", "Request has expired (injected fault: file_403)");
    }
    if shared.faults.take(|f| &mut f.file_500) {
        return oo(StatusCode::INTERNAL_SERVER_ERROR, "exception", "injected fault: file_500");
    }
    if shared.faults.take(|f| &mut f.file_410) {
        return oo(StatusCode::GONE, "not-found", "this link has expired (injected fault: file_410)");
    }
    let first = jobs::files_of(&shared, job).and_then(|f| f.outputs.first().cloned());
    let file = match first {
        Some(first) if first.name == file.name && shared.faults.take(|f| &mut f.file_drop_last_line) => {
            jobs::without_last_line(&file)
        }
        _ => file,
    };

    let gzip = shared.cfg.gzip && accepts_gzip(headers);
    let bytes = if gzip { gzipped(file).await } else { file.bytes.clone() };
    let total = bytes.len() as u64;
    let mut status = StatusCode::OK;
    let mut body = bytes;
    let mut content_range = None;
    if shared.cfg.accept_ranges
        && let Some(range) = headers.get(header::RANGE).and_then(|v| v.to_str().ok())
    {
        match parse_range(range, total) {
            Some((start, end)) => {
                body = body.slice(start as usize..=end as usize);
                status = StatusCode::PARTIAL_CONTENT;
                content_range = Some(format!("bytes {start}-{end}/{total}"));
            }
            None => {
                let mut r = oo(StatusCode::RANGE_NOT_SATISFIABLE, "invalid", format!("unsatisfiable range {range}"));
                r.headers_mut()
                    .insert(header::CONTENT_RANGE, HeaderValue::from_str(&format!("bytes */{total}")).expect("ascii"));
                return r;
            }
        }
    }

    let declared = body.len() as u64;
    let chaotic = match (&shared.chaos, chaos) {
        (Some(c), Some(mut draw)) => c.body(&mut draw, declared),
        _ => None,
    };
    let resp_body = if let Some(fault) = chaotic {
        chaos_body(fault, body)
    } else if let Some(cut) = shared.faults.take_cut(name) {
        // N bytes, a pause so hyper flushes headers and those bytes, then an error: hyper aborts the
        // connection mid-body, as a dropped TCP link would.
        let head = body.slice(..(cut.min(declared) as usize));
        truncated(head, true)
    } else if let Some(at) = shared.faults.take_stall(name) {
        stalled(body.slice(..(at.min(declared) as usize)))
    } else if shared.faults.take(|f| &mut f.file_short_body) {
        // The body ends early but cleanly; Content-Length still promises everything.
        truncated(body.slice(..body.len() / 2), false)
    } else if let Some(rate) = shared.faults.get().file_bytes_per_sec {
        throttled(body, rate)
    } else {
        Body::from(body)
    };
    let mut r = Response::new(resp_body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(NDJSON));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(declared));
    if shared.cfg.accept_ranges {
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    }
    if shared.cfg.gzip {
        h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    if gzip {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    if let Some(cr) = content_range {
        h.insert(header::CONTENT_RANGE, HeaderValue::from_str(&cr).expect("ascii"));
    }
    r
}

/// A file body cut or slowed by chaos mode.
fn chaos_body(fault: BodyFault, body: Bytes) -> Body {
    match fault {
        BodyFault::Cut(at) => truncated(body.slice(..(at.min(body.len() as u64) as usize)), true),
        BodyFault::Slow(rate) => throttled(body, rate),
    }
}

/// A body sent in 16 KiB pieces at about `rate` bytes per second.
fn throttled(body: Bytes, rate: u64) -> Body {
    const PIECE: usize = 16 * 1024;
    let pause = std::time::Duration::from_secs_f64(PIECE as f64 / rate.max(1) as f64);
    let stream = futures_util::stream::unfold(0usize, move |at| {
        let body = body.clone();
        async move {
            if at >= body.len() {
                return None;
            }
            if at > 0 {
                tokio::time::sleep(pause).await;
            }
            let end = (at + PIECE).min(body.len());
            Some((Ok::<_, std::io::Error>(body.slice(at..end)), end))
        }
    });
    Body::from_stream(stream)
}

/// A body that sends `head` and then nothing, never ending: a stalled transfer.
fn stalled(head: Bytes) -> Body {
    let stream = futures_util::stream::once(async move { Ok::<_, std::io::Error>(head) })
        .chain(futures_util::stream::once(std::future::pending::<Result<Bytes, std::io::Error>>()));
    Body::from_stream(stream)
}

/// A body that sends `head`, waits a moment (so it reaches the client), then fails or just ends.
pub(super) fn truncated(head: Bytes, fail: bool) -> Body {
    let stream = futures_util::stream::unfold(0u8, move |step| {
        let head = head.clone();
        async move {
            match step {
                0 => Some((Ok(head), 1)),
                1 if fail => {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    let e =
                        std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "injected fault: file_cut_after");
                    Some((Err(e), 2))
                }
                1 => {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    None
                }
                _ => None,
            }
        }
    });
    Body::from_stream(stream)
}

fn reject_authorization() -> Response {
    oo(
        StatusCode::BAD_REQUEST,
        "security",
        "this storage URL is pre-signed: requests must not carry an Authorization header",
    )
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT_ENCODING).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(
        |c| {
            let mut parts = c.split(';').map(str::trim);
            let coding = parts.next().unwrap_or("");
            let refused = parts.any(|p| p.replace(' ', "") == "q=0");
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
        },
    )
}

/// Compress once per file (on a blocking thread: large files take seconds), then serve the cached bytes.
async fn gzipped(file: Arc<FileData>) -> Bytes {
    if let Some(gz) = file.gz.get() {
        return gz.clone();
    }
    tokio::task::spawn_blocking(move || {
        file.gz
            .get_or_init(|| {
                let mut enc = flate2::write::GzEncoder::new(
                    Vec::with_capacity(file.bytes.len() / 5),
                    flate2::Compression::fast(),
                );
                enc.write_all(&file.bytes).expect("in-memory write");
                Bytes::from(enc.finish().expect("in-memory write"))
            })
            .clone()
    })
    .await
    .expect("gzip task")
}

/// A single `bytes=` range as (first, last) inclusive; `None` when unsatisfiable or unparsable.
pub fn parse_range(h: &str, total: u64) -> Option<(u64, u64)> {
    let spec = h.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        // Suffix range: the last N bytes.
        let n: u64 = b.parse().ok()?;
        if n == 0 || total == 0 {
            return None;
        }
        return Some((total.saturating_sub(n), total - 1));
    }
    let start: u64 = a.parse().ok()?;
    let end = if b.is_empty() { total.checked_sub(1)? } else { b.parse::<u64>().ok()?.min(total.checked_sub(1)?) };
    (start < total && start <= end).then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=10-", 100), Some((10, 99)));
        assert_eq!(parse_range("bytes=10-19", 100), Some((10, 19)));
        assert_eq!(parse_range("bytes=90-200", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=-5", 100), Some((95, 99)));
        assert_eq!(parse_range("bytes=100-", 100), None);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
    }

    #[test]
    fn gzip_negotiation() {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("br, gzip;q=0.8"));
        assert!(accepts_gzip(&h));
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip;q=0, identity"));
        assert!(!accepts_gzip(&h));
    }
}
