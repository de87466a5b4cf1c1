//! Tests of the line layouts: exact lines at 120 and 60 columns, waits, bars, messages.

use super::*;
use crate::progress::Event;
use crate::record::FileKind;
use crate::record::PlannedFile;
use std::time::Duration;

fn layout(cols: usize) -> Layout {
    Layout::new(cols, &["provider-nightly".to_string(), "payer-to-payer".to_string()], false)
}

fn planned() -> Vec<PlannedFile> {
    ["Patient.ndjson", "ExplanationOfBenefit.ndjson", "Coverage.ndjson", "error/OperationOutcome.ndjson"]
        .iter()
        .map(|p| PlannedFile {
            kind: if p.starts_with("error/") { FileKind::Error } else { FileKind::Output },
            resource_type: "X".into(),
            url: url::Url::parse("http://127.0.0.1/x").unwrap(),
            count: None,
            path: p.to_string(),
            continues_in: None,
        })
        .collect()
}

/// A job 12.4 s in: two files in flight, one done.
fn downloading(t0: Instant) -> (JobView, Instant) {
    let p = planned();
    let mut v = JobView::new("provider-nightly", t0);
    let at = |ms| t0 + Duration::from_millis(ms);
    v.apply(&Event::ManifestReady { files: 4, resources: None, planned: &p, verified: &[] }, at(10_000));
    for (id, total) in [(0, 3 << 20), (1, 40 << 20)] {
        v.apply(&Event::DownloadStarted { id, file: &p[id] }, at(10_000));
        v.apply(&Event::DownloadOffset { id, offset: 0 }, at(10_000));
        v.apply(&Event::DownloadLength { id, total }, at(10_000));
    }
    v.apply(&Event::DownloadProgress { id: 0, bytes: 3 << 20 }, at(10_500));
    v.apply(&Event::DownloadFinished { id: 0, file: &p[0], lines: 10, bytes: 3 << 20 }, at(10_500));
    v.apply(&Event::DownloadStarted { id: 2, file: &p[2] }, at(10_500));
    v.apply(&Event::DownloadOffset { id: 2, offset: 0 }, at(10_500));
    v.apply(&Event::DownloadProgress { id: 1, bytes: 10 << 20 }, at(12_400));
    (v, at(12_400))
}

#[test]
fn downloads_at_120_columns() {
    let t0 = Instant::now();
    let (v, now) = downloading(t0);
    assert_eq!(
        job_lines(&v, &layout(120), now),
        [
            "⠼  provider-nightly  [=========>                  ]  1/3 files  13.0/43.0+ MiB  5.3 MiB/s  ETA ~9s  +1 error file  12s",
            "   provider-nightly  ExplanationOfBenefit.ndjson       10.0/40.0 MiB  [=====>                ]   25%",
            "   provider-nightly  Coverage.ndjson                             0 B",
        ]
    );
}

#[test]
fn downloads_at_60_columns_fit() {
    let t0 = Instant::now();
    let (v, now) = downloading(t0);
    let lines = job_lines(&v, &layout(60), now);
    assert_eq!(
        lines,
        [
            "⠼ provider-… [===>       ] 1/3 files 13.0/43.0+ MiB ETA ~9s",
            "  provider-… ExplanationOfBene… 10.0/40.0 MiB [=>    ]  25%",
            "  provider-… Coverage.ndjson              0 B",
        ]
    );
    assert!(lines.iter().all(|l| width(l) <= 59));
}

#[test]
fn waiting_shows_x_progress_the_next_check_and_the_export_age() {
    let t0 = Instant::now();
    let mut v = JobView::new("provider-nightly", t0);
    v.apply(
        &Event::Polling {
            elapsed: Duration::from_secs(63),
            progress: Some("in progress: 66%"),
            next_in: Duration::from_millis(400),
        },
        t0,
    );
    assert_eq!(
        job_lines(&v, &layout(120), t0),
        ["⠋  provider-nightly  waiting for the server 1m 03s  · in progress: 66%  · next check in 0.4s"]
    );
    // Narrow: X-Progress is kept whole, the countdown goes first.
    assert_eq!(
        job_lines(&v, &layout(60), t0 + Duration::from_millis(100)),
        ["⠙ provider-… waiting 1m 03s · in progress: 66%"]
    );
    // A long X-Progress is cut to fit, never wrapped.
    v.apply(
        &Event::Polling {
            elapsed: Duration::from_secs(63),
            progress: Some("Exporting ExplanationOfBenefit: 1,234,567 of 9,876,543 resources"),
            next_in: Duration::from_secs(30),
        },
        t0,
    );
    assert_eq!(job_lines(&v, &layout(60), t0), ["⠋ provider-… waiting 1m 03s · Exporting ExplanationOfBenef…"]);
}

#[test]
fn sizes_show_a_plus_until_every_size_is_known() {
    let c = Counters { bytes_done: 1 << 20, bytes_known: 4 << 20, sizes_known: false, ..Counters::default() };
    assert_eq!(sizes(&c), "1.0/4.0+ MiB");
    assert_eq!(sizes(&Counters { sizes_known: true, ..c }), "1.0/4.0 MiB");
}

#[test]
fn messages_wrap_at_spaces_under_their_text() {
    let l = layout(60);
    let text = "$bulk-member-match: 3 matched, 1 not matched, 0 consent-constrained; exporting Group/matched-7";
    assert_eq!(
        message("payer-to-payer", text, &l, false),
        "  payer-to-…  $bulk-member-match: 3 matched, 1 not matched,\n              0 consent-constrained; exporting\n              Group/matched-7"
    );
    let one = Layout::new(60, &["a".to_string()], false);
    assert_eq!(message("a", "short", &one, false), "  a  short");
}

#[test]
fn bars() {
    assert_eq!(draw_bar(0.0, 8), "[      ]");
    assert_eq!(draw_bar(0.5, 8), "[===>  ]");
    assert_eq!(draw_bar(1.0, 8), "[======]");
}

#[test]
fn colour_wraps_parts_but_widths_count_plain_text() {
    let t0 = Instant::now();
    let mut l = layout(60);
    l.color = true;
    let v = JobView::new("a", t0);
    let line = &job_lines(&v, &l, t0)[0];
    assert_eq!(line, "⠋ \x1b[1ma         \x1b[0m getting an access token 0s");
}
