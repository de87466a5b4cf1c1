//! Tests of one job's view: which files count where, resumed offsets, retries, files verified by an
//! earlier run, the phase text of polls and retries.

use super::*;
use crate::record::FileRecord;
use crate::record::PlannedFile;

fn file(kind: FileKind, path: &str) -> PlannedFile {
    PlannedFile {
        kind,
        resource_type: path.split('.').next().unwrap().rsplit('/').next().unwrap().to_string(),
        url: url::Url::parse(&format!("http://127.0.0.1/{path}")).unwrap(),
        count: None,
        path: path.to_string(),
        continues_in: None,
    }
}

fn ms(t0: Instant, n: u64) -> Instant {
    t0 + Duration::from_millis(n)
}

#[test]
fn counts_data_files_apart_from_error_files() {
    let t0 = Instant::now();
    let mut v = JobView::new("a", t0);
    let planned = vec![
        file(FileKind::Output, "Patient.ndjson"),
        file(FileKind::Output, "Coverage.ndjson"),
        file(FileKind::Error, "error/OperationOutcome.ndjson"),
    ];
    v.apply(&Event::ManifestReady { files: 3, resources: Some(30), planned: &planned, verified: &[] }, t0);
    for (id, f) in planned.iter().enumerate() {
        v.apply(&Event::DownloadStarted { id, file: f }, t0);
        v.apply(&Event::DownloadOffset { id, offset: 0 }, t0);
        v.apply(&Event::DownloadLength { id, total: 1000 }, t0);
        v.apply(&Event::DownloadProgress { id, bytes: 1000 }, ms(t0, 100));
        v.apply(&Event::DownloadFinished { id, file: f, lines: 10, bytes: 1000 }, ms(t0, 100));
    }
    let c = v.counters();
    assert_eq!((c.files, c.files_done, c.error_files, c.error_files_done), (2, 2, 1, 1));
    assert_eq!((c.bytes_done, c.bytes_known, c.resources_done), (2000, 2000, 20));
    assert!(c.sizes_known);
}

#[test]
fn a_resumed_offset_is_progress_but_not_speed() {
    let t0 = Instant::now();
    let mut v = JobView::new("a", t0);
    let p = vec![file(FileKind::Output, "Patient.ndjson")];
    v.apply(&Event::ManifestReady { files: 1, resources: None, planned: &p, verified: &[] }, t0);
    v.apply(&Event::DownloadStarted { id: 0, file: &p[0] }, t0);
    v.apply(&Event::DownloadOffset { id: 0, offset: 900 << 20 }, t0);
    v.apply(&Event::DownloadLength { id: 0, total: 1000 << 20 }, t0);
    v.apply(&Event::DownloadProgress { id: 0, bytes: 1 << 20 }, ms(t0, 10));
    v.apply(&Event::DownloadProgress { id: 0, bytes: 1 << 20 }, ms(t0, 1000));
    let c = v.counters();
    assert_eq!(c.bytes_done, 902 << 20);
    let rate = v.rate(ms(t0, 1000)).unwrap();
    // 1 MiB in the 0.99 s since the first chunk, not 900 MiB.
    assert!((rate - 1048576.0 / 0.99).abs() < 1.0, "{rate}");
    let (eta, exact) = v.eta(ms(t0, 1000)).unwrap();
    assert!(exact);
    assert_eq!(eta.as_secs(), 97); // 98 MiB left at 1.01 MiB/s
}

#[test]
fn a_retry_moves_the_file_back_and_the_next_attempt_says_where_it_starts() {
    let t0 = Instant::now();
    let mut v = JobView::new("a", t0);
    let p = vec![file(FileKind::Output, "Patient.ndjson")];
    v.apply(&Event::ManifestReady { files: 1, resources: None, planned: &p, verified: &[] }, t0);
    v.apply(&Event::DownloadStarted { id: 0, file: &p[0] }, t0);
    v.apply(&Event::DownloadOffset { id: 0, offset: 0 }, t0);
    v.apply(&Event::DownloadLength { id: 0, total: 4000 }, t0);
    v.apply(&Event::DownloadProgress { id: 0, bytes: 1500 }, t0);
    let line = v.apply(&Event::DownloadRetry { id: 0, file: &p[0], reason: "connection reset", resume_from: 1500 }, t0);
    assert_eq!(line.as_deref(), Some("retrying Patient.ndjson from 1.5 KiB: connection reset"));
    assert_eq!(v.active[&0].retrying.as_deref(), Some("connection reset"));
    // The server ignored the range: the file starts again, and its bytes are not counted twice.
    v.apply(&Event::DownloadOffset { id: 0, offset: 0 }, t0);
    v.apply(&Event::DownloadProgress { id: 0, bytes: 4000 }, t0);
    assert_eq!(v.counters().bytes_done, 4000);
    v.apply(&Event::DownloadFinished { id: 0, file: &p[0], lines: 4, bytes: 4000 }, t0);
    assert_eq!(v.counters().bytes_done, 4000);
}

#[test]
fn files_verified_by_an_earlier_run_count_as_done() {
    let t0 = Instant::now();
    let mut v = JobView::new("a", t0);
    let p = vec![file(FileKind::Output, "Patient.ndjson"), file(FileKind::Output, "Coverage.ndjson")];
    let earlier = FileRecord {
        kind: FileKind::Output,
        resource_type: "Patient".into(),
        url: "http://127.0.0.1/Patient.ndjson".into(),
        path: "Patient.ndjson".into(),
        expected_count: None,
        lines: 7,
        bytes: 700,
        sha256: String::new(),
        invalid_lines: 0,
        wrong_type_lines: 0,
        types: Default::default(),
        header_lines: 0,
        continues_in: None,
    };
    v.apply(&Event::ManifestReady { files: 2, resources: None, planned: &p, verified: &[earlier] }, t0);
    let c = v.counters();
    assert_eq!((c.files_done, c.bytes_done, c.resources_done, c.sizes_known), (1, 700, 7, false));
}

#[test]
fn polls_and_retries_set_the_phase_with_clean_text() {
    let t0 = Instant::now();
    let mut v = JobView::new("a", t0);
    v.apply(
        &Event::Polling {
            elapsed: Duration::from_secs(3),
            progress: Some("50%\x1b[2J"),
            next_in: Duration::from_millis(400),
        },
        t0,
    );
    assert_eq!(
        v.phase,
        Phase::Waiting {
            progress: Some("50% [2J".into()),
            export_elapsed: Duration::from_secs(3),
            at: t0,
            next_at: ms(t0, 400)
        }
    );
    let line = v.apply(
        &Event::Retrying { what: "status", attempt: 1, of: 3, wait: Duration::from_millis(400), reason: "HTTP 503" },
        t0,
    );
    assert_eq!(line.as_deref(), Some("retry 1/3 of status in 0.4s: HTTP 503"));
}
