//! What people see when a command runs several jobs: each job's own counters (captured as events and
//! as rendered lines, serial and `--parallel 2`), and the terminal bars on an in-memory terminal:
//! one job's end clears only its lines, and the screens of two jobs at 120 and 60 columns and of
//! retries. The binary's stderr and stdout are checked in `logs.rs`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{InMemoryTerm, ProgressDrawTarget};
use oneup_bulk::app::{RunOptions, RunOutcome};
use oneup_bulk::cli::SummaryFormat;
use oneup_bulk::commands::{Board, Runner, SlotState, run_all, summary};
use oneup_bulk::progress::{Bars, Capture, Display, Event, Reporter, units};
use oneup_bulk::record::FileKind;
use oneup_bulk::record::PlannedFile;
use oneup_bulk::sandbox::SandboxConfig;

use crate::harness::*;

const SMALL: &str = "  level: system\n  types: [Patient, Coverage]\n";
const LARGER: &str = "  level: system\n  types: [ExplanationOfBenefit, Encounter, Observation]\n";

fn outcome_of(r: &Result<Box<RunOutcome>, oneup_bulk::Error>) -> &RunOutcome {
    r.as_ref().unwrap_or_else(|e| panic!("the job failed: {e}"))
}

/// Drives two jobs of different sizes through one `run` with a capturing display; every job's
/// counters must be its own run.json's, events and rendered lines alike.
async fn two_jobs(parallel: usize) {
    let env = Env::default().await;
    let a = env.job_from(&env.yaml("a", SMALL, ""));
    let b = env.job_from(&env.yaml("b", LARGER, ""));
    let capture = Arc::new(Capture::new());
    let runner = Runner { display: capture.clone(), parallel, summary: SummaryFormat::Text, out: None, columns: None };
    let board = Board::new(&[a.clone(), b.clone()]);
    run_all(&[a, b], &RunOptions::default(), &runner, &board).await;
    let slots = board.take();
    let mut summaries = Vec::new();
    for s in &slots {
        let SlotState::Done(res) = &s.state else { panic!("{} did not finish", s.name) };
        let out = outcome_of(res);
        let data: Vec<_> = out.record.files.iter().filter(|f| f.kind == FileKind::Output).collect();
        let data_bytes: u64 = data.iter().map(|f| f.bytes).sum();
        // The counters the bars show.
        let view = capture.view(&s.name);
        let c = view.counters();
        assert_eq!((c.files, c.files_done), (data.len(), data.len()), "{}", s.name);
        assert_eq!((c.bytes_done, c.bytes_known), (data_bytes, data_bytes), "{}", s.name);
        assert_eq!(c.resources_done, out.record.totals.resources, "{}", s.name);
        assert_eq!(c.error_files_done as u64, out.record.totals.error_files, "{}", s.name);
        assert!(c.sizes_known && c.failed == 0 && view.active.is_empty(), "{}: {c:?}", s.name);
        assert!(capture.finished(&s.name), "{}: finish() called", s.name);
        // The events: exactly this job's files, each once, with its own ids.
        let mut done: Vec<String> = capture
            .events(&s.name)
            .iter()
            .filter_map(|e| e.strip_prefix("done ").map(|d| d.split(' ').skip(1).collect::<Vec<_>>().join(" ")))
            .collect();
        let mut expected: Vec<String> =
            out.record.files.iter().map(|f| format!("{} {} lines {} bytes", f.path, f.lines, f.bytes)).collect();
        done.sort();
        expected.sort();
        assert_eq!(done, expected, "{}", s.name);
        // The rendered lines: the job's own totals, and nothing wider than 59 columns at 60.
        let header = &capture.lines(&s.name, 120)[0];
        // Past the spinner: `⠋  a  [====…]  2/2 files  13.6/13.6 KiB  …`.
        let header: String = header.chars().skip(3).collect();
        let files = format!("{n}/{n} files", n = data.len());
        let bytes = units::pair(data_bytes, data_bytes);
        assert!(header.starts_with(&format!("{}  [{}]  {files}  {bytes}  ", s.name, "=".repeat(28))), "{header}");
        for l in capture.lines(&s.name, 60) {
            assert!(units::width(&l) <= 59, "{l}");
        }
        summaries.push(summary::text(&s.name, out));
    }
    // One summary per job, printed as each ends (in either order when they run at once).
    let printed = capture.printed();
    let (ab, ba) = (summaries.concat(), format!("{}{}", summaries[1], summaries[0]));
    assert!(printed == ab || (parallel > 1 && printed == ba), "{printed}");
    assert_eq!(capture.jobs().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_jobs_one_after_the_other_keep_their_own_counters() {
    two_jobs(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_jobs_at_once_keep_their_own_counters() {
    two_jobs(2).await;
}

type Clock = Arc<Mutex<Instant>>;

fn bars_on(term: &InMemoryTerm, names: &[&str], columns: usize, clock: Option<Clock>) -> Arc<Bars> {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let now: Box<dyn Fn() -> Instant + Send + Sync> = match clock {
        Some(c) => Box::new(move || *c.lock().unwrap()),
        None => Box::new(Instant::now),
    };
    Arc::new(Bars::with_target(
        ProgressDrawTarget::term_like(Box::new(term.clone())),
        &names,
        Box::new(move || columns),
        now,
        false,
    ))
}

/// The first job's end clears its own lines only; the second job's wait is on screen meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_jobs_finish_leaves_the_others_lines() {
    let env_a = Env::default().await;
    let env_b = Env::long_export(100_000).await;
    let a = env_a.job_from(&env_a.yaml("a", SMALL, ""));
    let b = env_b.job_from(&env_b.yaml("b", SMALL, ""));
    let term = InMemoryTerm::new(20, 120);
    let bars = bars_on(&term, &["a", "b"], 120, None);
    let runner = Runner { display: bars.clone(), parallel: 2, summary: SummaryFormat::None, out: None, columns: None };
    let jobs = [a, b];
    let board = Board::new(&jobs);
    let a_done = env_a.out().join("a/latest/run.json");
    let screen = || term.contents();
    let opts = RunOptions::default();
    tokio::select! {
        () = run_all(&jobs, &opts, &runner, &board) => panic!("job b cannot finish"),
        () = wait_until("job a to end, with b still waiting", || {
            bars.tick();
            let s = screen();
            a_done.exists() && s.lines().count() == 1 && s.contains("b  waiting for the server")
        }) => {}
    }
    let s = screen();
    // `⠋  b  waiting for the server 0s  · in progress: 0%  · next check in 0.1s`, whatever the times.
    let line = s.lines().next().unwrap();
    assert_eq!(line.chars().nth(1), Some(' '));
    assert!(line[line.char_indices().nth(3).unwrap().0..].starts_with("b  waiting for the server "), "{s}");
    // Between polls it counts down to the next check; at the moment of a poll it says so.
    assert!(line.contains("· next check in ") || line.ends_with("· checking"), "{s}");
    bars.finish();
    assert_eq!(term.contents(), "", "finish() clears what is left");
}

fn planned(kind: FileKind, path: &str) -> PlannedFile {
    PlannedFile {
        kind,
        resource_type: path.trim_start_matches("error/").split('.').next().unwrap().to_string(),
        url: url::Url::parse(&format!("http://127.0.0.1/files/{path}")).unwrap(),
        count: None,
        path: path.to_string(),
        continues_in: None,
    }
}

/// Two jobs at once, fed a fixed script of events on a made-up clock: the screens of the report.
fn screen(columns: usize, retries: bool) -> String {
    let t0 = Instant::now();
    let clock: Clock = Arc::new(Mutex::new(t0));
    let at = |ms: u64| *clock.lock().unwrap() = t0 + Duration::from_millis(ms);
    let term = InMemoryTerm::new(24, columns as u16);
    let bars = bars_on(&term, &["provider-nightly", "payer-to-payer"], columns, Some(clock.clone()));
    let a = bars.for_job("provider-nightly");
    at(1000);
    let b = bars.for_job("payer-to-payer");
    let files = [
        planned(FileKind::Output, "Patient.ndjson"),
        planned(FileKind::Output, "Coverage.ndjson"),
        planned(FileKind::Output, "ExplanationOfBenefit.ndjson"),
        planned(FileKind::Output, "Encounter.ndjson"),
        planned(FileKind::Output, "Observation.ndjson"),
        planned(FileKind::Output, "Condition.ndjson"),
        planned(FileKind::Error, "error/OperationOutcome.ndjson"),
    ];
    let sizes = [15_498_843u64, 30_867_770, 149_099_935, 40_353_686, 67_427_602];
    let ev = |r: &Arc<dyn Reporter>, ms: u64, e: Event<'_>| {
        at(ms);
        r.event(&e);
    };
    ev(&a, 200, Event::TokenObtained { expires_in: Some(3600) });
    ev(&a, 300, Event::KickedOff { status_url: "http://127.0.0.1/status/1" });
    ev(&b, 1200, Event::TokenObtained { expires_in: Some(300) });
    ev(
        &b,
        1500,
        Event::Note {
            message: "$bulk-member-match: 3 matched, 1 not matched, 0 consent-constrained; exporting Group/matched-7",
        },
    );
    ev(&b, 1600, Event::KickedOff { status_url: "http://127.0.0.1/status/2" });
    ev(&a, 5000, Event::ManifestReady { files: 7, resources: Some(449_569), planned: &files, verified: &[] });
    for (id, size) in sizes.iter().enumerate().take(4) {
        ev(&a, 5000, Event::DownloadStarted { id, file: &files[id] });
        ev(&a, 5000, Event::DownloadOffset { id, offset: 0 });
        ev(&a, 5000, Event::DownloadLength { id, total: *size });
    }
    ev(&a, 6000, Event::DownloadProgress { id: 0, bytes: sizes[0] });
    ev(&a, 6000, Event::DownloadFinished { id: 0, file: &files[0], lines: 30_000, bytes: sizes[0] });
    ev(&a, 6000, Event::DownloadStarted { id: 4, file: &files[4] });
    ev(&a, 6000, Event::DownloadOffset { id: 4, offset: 0 });
    ev(&a, 6000, Event::DownloadLength { id: 4, total: sizes[4] });
    for (id, n) in [(1, 20_000_000), (2, 30_000_000), (3, 25_000_000), (4, 5_000_000)] {
        ev(&a, 7000, Event::DownloadProgress { id, bytes: n });
    }
    ev(
        &b,
        7900,
        Event::Polling {
            elapsed: Duration::from_secs(62),
            progress: Some("Exporting: 12 of 40 members"),
            next_in: Duration::from_millis(400),
        },
    );
    if retries {
        ev(
            &a,
            8000,
            Event::DownloadRetry {
                id: 2,
                file: &files[2],
                reason: "connection reset by peer",
                resume_from: 30_000_000,
            },
        );
        ev(
            &b,
            8000,
            Event::Retrying {
                what: "status",
                attempt: 2,
                of: 5,
                wait: Duration::from_millis(1600),
                reason: "HTTP 503 Service Unavailable",
            },
        );
    }
    at(8200);
    bars.tick();
    term.contents()
}

#[test]
fn two_jobs_at_120_columns() {
    let s = screen(120, false);
    assert_eq!(
        s,
        [
            "   payer-to-payer    $bulk-member-match: 3 matched, 1 not matched, 0 consent-constrained; exporting Group/matched-7",
            "⠹  provider-nightly  [====>                       ]  1/6 files  91.1/289.2+ MiB  34.7 MiB/s  ETA ~7s  +1 error file  8s",
            "   provider-nightly  Coverage.ndjson                   19.1/29.4 MiB  [==============>       ]   64%",
            "   provider-nightly  ExplanationOfBenefit.ndjson      28.6/142.2 MiB  [====>                 ]   20%",
            "   provider-nightly  Encounter.ndjson                  23.8/38.5 MiB  [=============>        ]   61%",
            "   provider-nightly  Observation.ndjson                 4.8/64.3 MiB  [=>                    ]    7%",
            "⠹  payer-to-payer    waiting for the server 1m 02s  · Exporting: 12 of 40 members  · next check in 0.1s",
        ]
        .join("\n")
    );
}

#[test]
fn two_jobs_at_60_columns() {
    let s = screen(60, false);
    assert!(s.lines().all(|l| units::width(l) <= 59), "{s}");
    assert_eq!(
        s,
        [
            "  payer-to-…  $bulk-member-match: 3 matched, 1 not matched,",
            "              0 consent-constrained; exporting",
            "              Group/matched-7",
            "⠹ provider-… [=>        ] 1/6 files 91.1/289.2+ MiB ETA ~7s",
            "  provider-… Coverage.ndjson    19.1/29.4 MiB [===>  ]  64%",
            "  provider-… ExplanationOfBene… 28.6/142.2 MiB  20%",
            "  provider-… Encounter.ndjson   23.8/38.5 MiB [===>  ]  61%",
            "  provider-… Observation.ndjson  4.8/64.3 MiB [>     ]   7%",
            "⠹ payer-to-… waiting 1m 02s · Exporting: 12 of 40 members",
        ]
        .join("\n")
    );
}

#[test]
fn retries_at_100_columns() {
    let s = screen(100, true);
    assert_eq!(
        s,
        [
            "  payer-to-payer    $bulk-member-match: 3 matched, 1 not matched, 0 consent-constrained; exporting",
            "                    Group/matched-7",
            "  provider-nightly  retrying ExplanationOfBenefit.ndjson from 28.6 MiB: connection reset by peer",
            "  payer-to-payer    retry 2/5 of status in 1.6s: HTTP 503 Service Unavailable",
            "⠹ provider-nightly [==>             ] 1/6 files 91.1/289.2+ MiB 34.7 MiB/s ETA ~7s +1 error file 8s",
            "  provider-nightly Coverage.ndjson            19.1/29.4 MiB [==============>       ]  64%",
            "  provider-nightly ExplanationOfBenefit.nd… retrying: connection reset by peer",
            "  provider-nightly Encounter.ndjson           23.8/38.5 MiB [=============>        ]  61%",
            "  provider-nightly Observation.ndjson          4.8/64.3 MiB [=>                    ]   7%",
            "⠹ payer-to-payer   retrying status (2/5) in 1.4s · HTTP 503 Service Unavailable 7s",
        ]
        .join("\n")
    );
}

/// A body cut twice and resumed with `Range`: the display sees each attempt's offset (so the bar
/// moves back to it, and neither the offset nor the retried bytes count twice).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_download_counts_its_bytes_once() {
    use oneup_bulk::sandbox::{Faults, FileCut};
    let cut = FileCut { pattern: "ExplanationOfBenefit".into(), bytes: 10_000, times: 2 };
    let env = Env::new(SandboxConfig {
        faults: Faults { file_cut_after: Some(cut), ..Default::default() },
        ..Default::default()
    })
    .await;
    let job = env.job_from(&env.yaml("t", LARGER, ""));
    let capture = Arc::new(Capture::new());
    let runner =
        Runner { display: capture.clone(), parallel: 1, summary: SummaryFormat::None, out: None, columns: None };
    let board = Board::new(std::slice::from_ref(&job));
    run_all(std::slice::from_ref(&job), &RunOptions::default(), &runner, &board).await;
    let slots = board.take();
    let SlotState::Done(res) = &slots[0].state else { panic!("not finished") };
    let out = outcome_of(res);
    let eob = out.record.files.iter().find(|f| f.resource_type == "ExplanationOfBenefit").unwrap();
    let events = capture.events("t");
    let id = events
        .iter()
        .find_map(|e| e.strip_prefix("start ").filter(|r| r.ends_with(" ExplanationOfBenefit.ndjson")))
        .and_then(|r| r.split(' ').next())
        .unwrap()
        .to_string();
    let offsets: Vec<&str> = events.iter().filter_map(|e| e.strip_prefix(&format!("offset {id} "))).collect();
    assert_eq!(offsets, ["0", "10000", "20000"], "{events:?}");
    let lengths: Vec<&str> = events.iter().filter_map(|e| e.strip_prefix(&format!("length {id} "))).collect();
    let whole = eob.bytes.to_string();
    assert_eq!(lengths, [whole.as_str(); 3], "every attempt announces the whole file's size");
    let c = capture.view("t").counters();
    let data: u64 = out.record.files.iter().filter(|f| f.kind == FileKind::Output).map(|f| f.bytes).sum();
    assert_eq!((c.bytes_done, c.bytes_known), (data, data));
}
