//! The completion manifest as the sandbox writes it: v2 by default, paged (`link` next) when asked,
//! v3 organized output (`outputOrganizedBy`, entries without `type`, `continuesInFile`) after an
//! `organizeOutputBy` kick-off, STU4 (`outcome`, `manifestType`, …) on request, and the manifest
//! faults real servers show (wrong counts in `error[]`, signed links, offset `transactionTime`s).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::Shared;
use super::fhir::{fmt_instant, json_response};
use super::jobs::{FileData, Job, JobFiles, status_url};

/// A file's URL; with `signed_file_urls`, a signature that changes with every manifest served.
fn file_url(shared: &Shared, job: &str, name: &str, sig: Option<u32>) -> String {
    let host = if shared.cfg.oneup.files_on_storage { &shared.storage_base } else { &shared.main_base };
    let mut u = host.join(&format!("files/{job}/{name}")).expect("URL-safe names");
    if let Some(n) = sig {
        u.set_query(Some(&format!("sig={n}")));
    }
    u.to_string()
}

/// `transactionTime`, in UTC (`Z`) or at the offset of `transaction_time_offset` (`+00:00`, `-05:00`).
fn transaction_time(t: OffsetDateTime, offset_minutes: Option<i32>) -> String {
    let Some(minutes) = offset_minutes else { return fmt_instant(t) };
    let offset = time::UtcOffset::from_whole_seconds(minutes * 60).unwrap_or(time::UtcOffset::UTC);
    t.to_offset(offset)
        .format(time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3][offset_hour sign:mandatory]:[offset_minute]"
        ))
        .expect("formattable instant")
}

fn entry(shared: &Shared, id: &str, f: &FileData, count: u64, sig: Option<u32>, organized: bool) -> Value {
    let mut e = json!({"url": file_url(shared, id, &f.name, sig), "count": count});
    if !organized {
        e["type"] = json!(f.rtype);
    }
    if let Some(next) = &f.continues_in {
        e["continuesInFile"] = json!(file_url(shared, id, next, sig));
    }
    if shared.faults.get().manifest_stu4 {
        e["fileSize"] = json!(f.bytes.len());
    }
    e
}

/// The manifest of a finished job (page `page` of it).
pub fn build(shared: &Shared, id: &str, job: &Job, files: &JobFiles, page: usize) -> Value {
    let faults = shared.faults.get();
    // Chaos mode signs links too: its expired links need fresh ones to be told apart.
    let sig = (faults.signed_file_urls || shared.chaos.is_some()).then_some(job.manifests_served);
    let mut output: Vec<Value> = files
        .outputs
        .iter()
        .filter(|f| faults.omit_output_type.as_deref() != Some(f.rtype.as_str()))
        .enumerate()
        .map(|(n, f)| {
            let count = f.listed_count.unwrap_or(f.count + u64::from(faults.count_mismatch && n == 0));
            entry(shared, id, f, count, sig, files.organized)
        })
        .collect();
    // Paged manifests (Bulk Data 3.0 `link` next): `page_size` outputs per page, the error file on page 1.
    let mut link = None;
    if let Some(size) = shared.cfg.manifest_page_size.filter(|s| *s > 0) {
        let pages = output.len().div_ceil(size).max(1);
        let start = ((page.max(1) - 1) * size).min(output.len());
        output = output[start..(start + size).min(output.len())].to_vec();
        if page < pages {
            let next = format!("{}?page={}", status_url(shared, id), page + 1);
            link = Some(json!([{"relation": "next", "url": next}]));
        }
    }
    // An empty error file (a member-match result's) is not listed.
    let error = if page <= 1 && shared.cfg.error_file && files.error.count > 0 {
        let e = &files.error;
        let count = faults.error_count.unwrap_or(e.count);
        let mut entry = json!({"url": file_url(shared, id, &e.name, sig), "count": count});
        if faults.manifest_stu4 {
            entry["countSeverity"] = json!([{"code": "error", "count": e.count}]);
        } else {
            entry["type"] = json!("OperationOutcome");
        }
        json!([entry])
    } else {
        json!([])
    };
    let mut m = json!({
        "transactionTime": transaction_time(job.transaction_time, faults.transaction_time_offset),
        "request": job.request,
        "requiresAccessToken": shared.cfg.requires_access_token,
        "output": output,
        "deleted": [],
    });
    if faults.manifest_stu4 {
        m["manifestType"] = json!("http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export|4.0.0");
        m["outputFormat"] = json!("application/fhir+ndjson");
        m["extension"] = json!([{"url": "http://example.org/fhir/StructureDefinition/sandbox", "valueString": "stu4"}]);
        m["outcome"] = error;
    } else {
        m["error"] = error;
    }
    if files.organized {
        m["outputOrganizedBy"] = json!("Patient");
    }
    if let Some(l) = link {
        m["link"] = l;
    }
    m
}

/// The `200` with the manifest; counts the manifests served (page 1) for signed links and expiry.
pub fn response(shared: &Shared, id: &str, job: &mut Job, files: &JobFiles, page: usize) -> Response {
    let body = build(shared, id, job, files, page);
    if page <= 1 {
        job.manifests_served += 1;
    }
    let mut r = json_response(StatusCode::OK, "application/json", &body);
    let expires = std::time::SystemTime::now() + std::time::Duration::from_secs(86_400);
    r.headers_mut().insert(header::EXPIRES, HeaderValue::from_str(&httpdate::fmt_http_date(expires)).expect("ascii"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_times_at_an_offset() {
        let t = OffsetDateTime::from_unix_timestamp(1_764_640_223).unwrap();
        assert_eq!(transaction_time(t, None), "2025-12-02T01:50:23.000Z");
        assert_eq!(transaction_time(t, Some(0)), "2025-12-02T01:50:23.000+00:00");
        assert_eq!(transaction_time(t, Some(-300)), "2025-12-01T20:50:23.000-05:00");
    }
}
