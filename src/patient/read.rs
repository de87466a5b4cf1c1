//! Reading the member's data page by page: the first requests (`Patient/<id>/$everything`, or one
//! search per type), then each page's `link` next until there is none. Each page goes to the type
//! files and the state before the next one is asked for; the next link must stay on the FHIR
//! server's origin (the member's token goes with it), must not repeat the page, and pages are bounded.

use std::time::SystemTime;

use reqwest::StatusCode;
use reqwest::header::ACCEPT;
use time::OffsetDateTime;
use url::Url;

use super::bundle;
use super::paging::Paging;
use crate::error::{Error, Result};
use crate::eventlog::{EventLog, LogEvent};
use crate::fhir::outcome_text;
use crate::job::{Job, ReadMode, check_url_scheme};
use crate::progress::Event;
use crate::redact::redact_query;
use crate::session::{Req, Session};
use crate::state::JobState;

/// Pages read in one run, at most: a server whose `next` links never end is stopped here.
pub const MAX_PAGES: u64 = 100_000;
/// The largest page read into memory.
const MAX_PAGE_BYTES: usize = 64 * 1024 * 1024;

/// The first request of each step, with `_type` and `_since` (`$everything`) or `_lastUpdated`
/// (searches: FHIR search has no `_since`). The operation name is lowercase: 1up's is case-sensitive.
pub fn requests(job: &Job, patient: &str, since: Option<OffsetDateTime>) -> Vec<Url> {
    let mode = job.patient.as_ref().map_or(ReadMode::Everything, |p| p.mode);
    let since = since.map(crate::instant::format);
    let id: String = url::form_urlencoded::byte_serialize(patient.as_bytes()).collect();
    match mode {
        ReadMode::Everything => {
            let mut u = job.fhir_base.join(&format!("Patient/{id}/$everything")).expect("a relative path joins");
            {
                let mut q = u.query_pairs_mut();
                if !job.export.types.is_empty() {
                    q.append_pair("_type", &job.export.types.join(","));
                }
                if let Some(s) = &since {
                    q.append_pair("_since", s);
                }
            }
            vec![clean(u)]
        }
        ReadMode::Search => job
            .export
            .types
            .iter()
            .map(|t| {
                let mut u = job.fhir_base.join(t).expect("a resource type joins");
                {
                    let mut q = u.query_pairs_mut();
                    match t.as_str() {
                        "Patient" => q.append_pair("_id", patient),
                        _ => q.append_pair("patient", patient),
                    };
                    if let Some(s) = &since {
                        q.append_pair("_lastUpdated", &format!("gt{s}"));
                    }
                }
                u
            })
            .collect(),
    }
}

/// `query_pairs_mut` leaves an empty `?` when nothing was added.
fn clean(mut u: Url) -> Url {
    if u.query() == Some("") {
        u.set_query(None);
    }
    u
}

/// The checkpoint of a read: the earlier of our clock before the first request and the server's
/// `Date` on the first page, so neither a fast local clock nor the second-rounding of `Date` can make
/// the next `since: auto` skip a change.
pub fn transaction_time(started: &str, server_date: Option<SystemTime>) -> String {
    let local = crate::instant::parse(started).unwrap_or_else(OffsetDateTime::now_utc);
    let t = match server_date.map(OffsetDateTime::from) {
        Some(d) if d < local => d,
        _ => local,
    };
    let t = t.to_offset(time::UtcOffset::UTC);
    let t = t.replace_nanosecond(t.nanosecond() / 1_000_000 * 1_000_000).unwrap_or(t);
    crate::instant::format(t)
}

/// Reads every page not yet read into the type files, saving the state after each.
pub async fn read_pages(
    job: &Job,
    session: &Session,
    state: &JobState,
    log: &EventLog,
    paging: &mut Paging,
) -> Result<()> {
    let run_dir_of = |id: &str| state.job_dir.join(id);
    let mut restarted = false;
    let mut step_noted = usize::MAX;
    while let Some(current) = paging.current().map(str::to_string) {
        if paging.pages >= MAX_PAGES {
            return Err(Error::Failed(format!(
                "more than {MAX_PAGES} pages: stopped (does the server's paging ever end?)"
            )));
        }
        if step_noted != paging.step && paging.next.is_none() {
            let message = format!("reading {}", redact_query(&Url::parse(&current).expect("a saved URL")));
            session.reporter.event(&Event::Note { message: &message });
            step_noted = paging.step;
        }
        let url = Url::parse(&current)
            .map_err(|e| Error::Failed(format!("the state holds a bad page link ({e}); run with --restart")))?;
        let req = Req::get(url.clone(), format!("page {}", paging.pages + 1)).header(ACCEPT, "application/fhir+json");
        let reply = session.send(&req, MAX_PAGE_BYTES).await?;
        let n = paging.pages + 1;
        match reply.status {
            s if s.is_success() => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                return Err(Error::AuthRefused {
                    url: redact_query(&url),
                    detail: format!(
                        "HTTP {}: {}; the plan refused the member's token (check auth.scope, or connect again with `{}`)",
                        reply.status.as_u16(),
                        outcome_text(&reply.body),
                        super::connection::authorize_command(job)
                    ),
                });
            }
            StatusCode::NOT_FOUND | StatusCode::GONE if paging.next.is_some() && !restarted => {
                // A saved or followed page link the server no longer knows: start the read over.
                let message = format!(
                    "page {n}: the server no longer knows the page link (HTTP {}); reading again from the start",
                    reply.status.as_u16()
                );
                session.reporter.event(&Event::Note { message: &message });
                let run_dir = run_dir_of(paging.run_id.as_deref().unwrap_or_default());
                paging.restart(&run_dir)?;
                paging.save(state)?;
                restarted = true;
                continue;
            }
            s => {
                let hint = if job.patient.as_ref().is_some_and(|p| p.mode == ReadMode::Everything) && paging.pages == 0
                {
                    " (if the plan has no Patient/$everything, set `export.mode: search`)"
                } else {
                    ""
                };
                return Err(Error::ServerRejected(format!(
                    "{} answered HTTP {}: {}{hint}",
                    redact_query(&url),
                    s.as_u16(),
                    outcome_text(&reply.body)
                )));
            }
        }
        let page = bundle::parse(&reply.body)
            .map_err(|why| Error::ServerRejected(format!("page {n} ({}): {why}", redact_query(&url))))?;
        let next = page.next.as_deref().map(|l| next_link(job, &url, l)).transpose()?;
        if paging.run_id.is_none() {
            let date = reply
                .headers
                .get(reqwest::header::DATE)
                .and_then(|d| d.to_str().ok())
                .and_then(|d| httpdate::parse_http_date(d).ok());
            paging.transaction_time = Some(transaction_time(&paging.started, date));
            paging.run_id = Some(unused_run_id(&state.job_dir, &paging.started));
        }
        let run_dir = run_dir_of(paging.run_id.as_deref().expect("set above"));
        crate::private_fs::create_private_dir(&run_dir)?;
        let step_url = paging.steps[paging.step].clone();
        let written = paging.append(&run_dir, &step_url, page.entries, job.download.max_file_bytes)?;
        paging.advance(next.map(String::from));
        paging.save(state)?;
        let progress = format!("page {n}: {written} resources");
        tracing::debug!(url = %redact_query(&url), written, "page read");
        log.write(&LogEvent::StatusProgress { x_progress: Some(&progress), retry_after_secs: None });
    }
    Ok(())
}

/// A page's `next` link, resolved against the page's URL: it must stay on the FHIR server's origin
/// (the member's token goes with it) and must not be the page itself.
fn next_link(job: &Job, page: &Url, link: &str) -> Result<Url> {
    let next = page
        .join(link.trim())
        .map_err(|e| Error::ServerRejected(format!("the next link {link:?} is not a URL ({e})")))?;
    check_url_scheme(&next).map_err(Error::ServerRejected)?;
    if next.origin() != job.fhir_base.origin() {
        return Err(Error::ServerRejected(format!(
            "the next link goes to {}, not to the FHIR server {}: not following it with the member's token",
            next.origin().ascii_serialization(),
            job.fhir_base.origin().ascii_serialization()
        )));
    }
    if next == *page {
        return Err(Error::ServerRejected(format!("the next link of {} is the page itself", redact_query(page))));
    }
    Ok(next)
}

/// The run folder's name: the read's start (`20250301T100000.123Z`), with `-2`, `-3`… if a run of the
/// same millisecond left one.
fn unused_run_id(job_dir: &std::path::Path, started: &str) -> String {
    let t = crate::instant::parse(started).unwrap_or_else(OffsetDateTime::now_utc);
    let base = crate::record::run_id(&transaction_time(&crate::instant::format(t), None));
    let mut id = base.clone();
    let mut n = 1;
    while job_dir.join(&id).join(crate::record::RUN_FILE).exists() {
        n += 1;
        id = format!("{base}-{n}");
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(mode: &str, types: &str) -> Job {
        let yaml = format!(
            "access: patient-access\nfhir_base: https://fhir.plan.example/r4\nauth:\n  client_id: app\n  client_secret: s\n  redirect_uri: http://127.0.0.1:8765/callback\nexport:\n  mode: {mode}\n  types: [{types}]\n"
        );
        crate::job::parse(&yaml, "t.yaml", std::path::Path::new("."), &|_| None).unwrap()
    }

    #[test]
    fn everything_and_search_requests() {
        let since = crate::instant::parse("2025-01-02T03:04:05Z");
        let urls: Vec<String> =
            requests(&job("everything", "Patient, Coverage"), "pt 1", since).iter().map(Url::to_string).collect();
        assert_eq!(
            urls,
            [
                "https://fhir.plan.example/r4/Patient/pt+1/$everything?_type=Patient%2CCoverage&_since=2025-01-02T03%3A04%3A05Z"
            ]
        );
        let urls: Vec<String> = requests(&job("everything", ""), "7", None).iter().map(Url::to_string).collect();
        assert_eq!(urls, ["https://fhir.plan.example/r4/Patient/7/$everything"]);
        let urls: Vec<String> =
            requests(&job("search", "Patient, Coverage"), "7", since).iter().map(Url::to_string).collect();
        assert_eq!(
            urls,
            [
                "https://fhir.plan.example/r4/Patient?_id=7&_lastUpdated=gt2025-01-02T03%3A04%3A05Z",
                "https://fhir.plan.example/r4/Coverage?patient=7&_lastUpdated=gt2025-01-02T03%3A04%3A05Z"
            ]
        );
    }

    #[test]
    fn the_checkpoint_is_the_earlier_clock() {
        let date = |s: &str| Some(SystemTime::from(crate::instant::parse(s).unwrap()));
        assert_eq!(
            transaction_time("2025-03-01T10:00:00.123456Z", date("2025-03-01T09:59:58Z")),
            "2025-03-01T09:59:58Z"
        );
        assert_eq!(
            transaction_time("2025-03-01T10:00:00.123456Z", date("2025-03-01T10:00:05Z")),
            "2025-03-01T10:00:00.123Z"
        );
        assert_eq!(transaction_time("2025-03-01T10:00:00.5Z", None), "2025-03-01T10:00:00.5Z");
    }

    #[test]
    fn next_links_stay_on_the_server() {
        let j = job("everything", "");
        let page = Url::parse("https://fhir.plan.example/r4/Patient/7/$everything").unwrap();
        assert_eq!(
            next_link(&j, &page, "?page=2").unwrap().as_str(),
            "https://fhir.plan.example/r4/Patient/7/$everything?page=2"
        );
        let e = next_link(&j, &page, "https://evil.example/r4/x").unwrap_err();
        assert_eq!(
            e.to_string(),
            "the server rejected the export: the next link goes to https://evil.example, not to the FHIR server https://fhir.plan.example: not following it with the member's token"
        );
        assert!(next_link(&j, &page, page.as_str()).is_err());
        assert!(next_link(&j, &page, "http://fhir.plan.example/r4/x").is_err());
    }
}
