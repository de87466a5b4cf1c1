//! The status endpoint, `GET /fhir/$export-status/{id}`: the status faults (404, failed exports, 5xx,
//! 429), 202 with X-Progress while a job is still "running" or generating, then its result: the
//! completion manifest ([`super::manifest`]), a `$bulk-member-match` document, or a hostile override.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;

use super::fhir::{FHIR_JSON, empty, json_response, oo, retry_after};
use super::jobs::JobOutput;
use super::{Shared, auth, lock};

/// `GET /fhir/$export-status/{id}`.
pub fn status(shared: &Shared, id: &str, headers: &HeaderMap, query: Option<&str>) -> Response {
    let page: usize = query
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("page=")))
        .and_then(|p| p.parse().ok())
        .unwrap_or(1);
    if let Some(r) = auth::unauthorized(shared, headers) {
        return r;
    }
    let ra = shared.cfg.retry_after;
    let f = &shared.faults;
    if f.get().status_404 {
        return oo(StatusCode::NOT_FOUND, "not-found", format!("export job {id} is not known (expired?)"));
    }
    if let Some((status, text)) = f.get().status_error {
        return oo(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), "exception", text);
    }
    if f.take(|f| &mut f.status_500_no_outcome) {
        let mut r = Response::new(axum::body::Body::from("<html><body>500 Internal Server Error</body></html>"));
        *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
        return r;
    }
    if f.take(|f| &mut f.status_503) {
        return retry_after(oo(StatusCode::SERVICE_UNAVAILABLE, "transient", "service unavailable"), ra);
    }
    if f.take(|f| &mut f.status_429) {
        return retry_after(oo(StatusCode::TOO_MANY_REQUESTS, "throttled", "polling too often"), ra);
    }
    if f.take(|f| &mut f.status_transient_oo) {
        return oo(StatusCode::INTERNAL_SERVER_ERROR, "transient", "temporary failure, retry the request");
    }
    let mut jobs = lock(&shared.jobs);
    let Some(job) = jobs.get_mut(id) else {
        return oo(StatusCode::NOT_FOUND, "not-found", format!("export job {id} is not known (expired or deleted)"));
    };
    if job.manifests_served > 0 && f.get().forget_after_manifest {
        return oo(StatusCode::GONE, "not-found", format!("export job {id} has expired"));
    }
    let files = match &job.output {
        JobOutput::Files(cell) => cell.get().cloned(),
        JobOutput::Document(_) => None,
    };
    let generating = matches!(job.output, JobOutput::Files(_)) && files.is_none();
    if job.polls_left > 0 || generating {
        let pct = if job.polls_left > 0 {
            job.polls_left -= 1;
            job.polls_done += 1;
            100 * job.polls_done / (job.polls_done + job.polls_left + 1)
        } else {
            95
        };
        let mut r = empty(StatusCode::ACCEPTED);
        let text = format!("in progress: {pct}%");
        r.headers_mut().insert("x-progress", HeaderValue::from_str(&text).expect("ascii"));
        return retry_after(r, ra);
    }
    match (&job.output, files) {
        (JobOutput::Document(doc), _) => json_response(StatusCode::OK, FHIR_JSON, doc),
        (JobOutput::Files(_), Some(_)) if shared.faults.get().manifest_override.is_some() => {
            let body = shared.faults.get().manifest_override.unwrap_or_default();
            let mut r = Response::new(axum::body::Body::from(body));
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            r
        }
        (JobOutput::Files(_), Some(files)) => super::manifest::response(shared, id, job, &files, page),
        (JobOutput::Files(_), None) => unreachable!("generating was answered above"),
    }
}
