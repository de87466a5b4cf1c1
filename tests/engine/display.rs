//! What people and pipelines see when a command runs several jobs: each job's own counters (captured
//! as events and as rendered lines), the terminal bars on an in-memory terminal, JSON log lines,
//! the summary, Ctrl-C between jobs, the demo's last screen, and the small things (`-v`, a job named
//! twice, `status` without a job).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{InMemoryTerm, ProgressDrawTarget};
use oneup_bulk::app::{RunOptions, RunOutcome};
use oneup_bulk::cli::SummaryFormat;
use oneup_bulk::commands::{Board, Runner, SlotState, run_all, summary};
use oneup_bulk::export::manifest::PlannedFile;
use oneup_bulk::progress::{Bars, Capture, Display, Event, Reporter, units};
use oneup_bulk::record::{FileKind, RunRecord};
use oneup_bulk::sandbox::SandboxConfig;
use serde_json::Value;

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
    let runner = Runner { display: capture.clone(), parallel, summary: SummaryFormat::Text };
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
    let runner = Runner { display: bars.clone(), parallel: 2, summary: SummaryFormat::None };
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
    assert!(line.contains("· next check in "), "{s}");
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

/// Every stderr line of `o`, parsed; panics on one that is not a JSON object.
fn json_lines(o: &std::process::Output) -> Vec<Value> {
    let stderr = String::from_utf8(o.stderr.clone()).unwrap();
    assert!(!stderr.is_empty());
    stderr
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
            assert!(v.is_object() && v["level"].is_string() && v["timestamp"].is_string(), "{l}");
            assert!(v.get("target").is_none(), "no target without -v: {l}");
            v
        })
        .collect()
}

fn record(run_dir: &Path) -> RunRecord {
    serde_json::from_slice(&std::fs::read(run_dir.join("run.json")).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_name_the_job_on_every_line_and_end_with_its_outcome() {
    let env = Env::default().await;
    let path = env.write_job("t.yaml", &env.yaml("t", SMALL, ""));
    let args =
        |p: &Path| vec!["run".into(), "--log-format=json".into(), "--summary=json".into(), p.display().to_string()];
    let o = run_bin(args(&path)).await;
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    let lines = json_lines(&o);
    for l in &lines {
        assert_eq!(l["job"], "t", "every line is about job t: {l}");
    }
    let last = lines.last().unwrap();
    let run_dir = PathBuf::from(last["run_dir"].as_str().unwrap());
    let r = record(&run_dir);
    let t = summary::tally(&r);
    assert_eq!(last["message"], "job finished");
    assert_eq!(last["level"], "INFO");
    assert_eq!(last["exit_code"], 5);
    assert_eq!((last["files"].as_u64(), last["resources"].as_u64()), (Some(t.data.files), Some(t.data.lines)));
    assert_eq!((last["bytes"].as_u64(), last["error_files"].as_u64()), (Some(t.data.bytes), Some(1)));
    assert_eq!(run_dir.parent().unwrap(), env.out().join("t"));
    // The summary: one JSON document on stdout, the same counts.
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["exit_code"], 5);
    let job = &doc["jobs"][0];
    assert_eq!(
        job["data"],
        serde_json::json!({"files": t.data.files, "resources": t.data.lines, "bytes": t.data.bytes})
    );
    assert_eq!(job["errors"]["files"], 1);
    assert_eq!(job["run_totals"], serde_json::to_value(&r.totals).unwrap());
    assert_eq!(job["run_dir"], last["run_dir"]);

    // A wrong secret: exit 3, still one JSON object per line, the last one the job's end.
    let wrong = env.write_job("w.yaml", &env.yaml("w", SMALL, "").replace("${TEST_SECRET}", "not-the-secret"));
    let o = run_bin(args(&wrong)).await;
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let lines = json_lines(&o);
    let last = lines.last().unwrap();
    assert_eq!(
        (&last["job"], &last["level"], &last["message"]),
        (&"w".into(), &"ERROR".into(), &"job finished".into())
    );
    assert_eq!(last["exit_code"], 3);
    assert!(last["error"].as_str().unwrap().starts_with("authorization refused by "), "{last}");
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((&doc["jobs"][0]["outcome"], &doc["exit_code"]), (&"failed".into(), &3.into()));

    // Fatal errors before any job: a bad job file, and a command line that does not parse.
    let bad = env.write_job("bad.yaml", "name: x\nacess: bulk-data\n");
    for args in [
        vec!["run".to_string(), "--log-format".into(), "json".into(), bad.display().to_string()],
        vec!["run".to_string(), "--log-format".into(), "json".into(), "--nope".into()],
    ] {
        let o = run_bin(args).await;
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        let lines = json_lines(&o);
        assert_eq!((lines.len(), &lines[0]["level"], &lines[0]["exit_code"]), (1, &"ERROR".into(), &2.into()));
    }
}

/// The binary's path as it prints it when run from a folder it is not under, off `PATH`.
fn me() -> String {
    std::fs::canonicalize(env!("CARGO_BIN_EXE_oneup-bulk")).unwrap().display().to_string()
}

fn bin_in(dir: &Path) -> std::process::Command {
    let mut c = bin();
    c.current_dir(dir).env_remove("CARGO").env("PATH", "/usr/bin:/bin");
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_during_the_second_job_keeps_the_first_jobs_summary_and_names_the_second() {
    let env_a = Env::default().await;
    let env_b = Env::long_export(100_000).await;
    let a = env_a.write_job("a.yaml", &env_a.yaml("a", SMALL, ""));
    let b = env_b.write_job("b.yaml", &env_b.yaml("b", SMALL, ""));
    let child = bin_in(env_a.dir.path())
        .args(["run", "-q"])
        .arg(&a)
        .arg(&b)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let b_inflight = env_b.out().join("b/.state/inflight.json");
    wait_until("job b's export to be in flight", || b_inflight.exists()).await;
    std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let o = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()).await.unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", text(&o));
    // stdout: a's summary, then the table naming b as interrupted.
    let a_dir = std::fs::canonicalize(env_a.out().join("a/latest")).unwrap();
    let a_out = RunOutcome {
        run_dir: env_a.out().join("a").join(a_dir.file_name().unwrap()),
        record: record(&a_dir),
        exit_code: 5,
    };
    let a_total = summary::tally(&a_out.record).data;
    let expected = format!(
        "{}\njobs (exit code, outcome):\n  a                          5  complete, with errors reported by the server: {} resources in {} files\n  b                        130  interrupted (Ctrl-C)\n",
        summary::text("a", &a_out),
        units::thousands(a_total.lines),
        a_total.files
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout), expected);
    // stderr: which job was cut short, and the commands that resume or forget it.
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        format!(
            "error: interrupted (Ctrl-C) during job b; its state is kept\n  resume:  {me} run {b}\n  forget the export instead:  {me} cancel {b}\n",
            me = me(),
            b = b.display()
        )
    );
    assert!(b_inflight.exists(), "b's state is kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_ends_clean_and_its_next_lines_work_as_printed() {
    let dir = tempfile::tempdir().unwrap();
    let o = tokio::task::spawn_blocking({
        let d = dir.path().to_path_buf();
        move || bin_in(&d).args(["demo", "-q"]).output().unwrap()
    })
    .await
    .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(out.starts_with("sandbox: complete (transactionTime "), "{out}");
    assert!(!out.contains("error"), "no server errors unless asked for: {out}");
    let next = out.split_once("\nnext:\n").map(|x| x.1).unwrap_or_else(|| panic!("{out}"));
    let me = me();
    assert_eq!(
        next,
        format!(
            "  {me} inspect exports/sandbox/latest   review what arrived\n  {me} sandbox   serve the same server on :8089 for your own job files\n"
        )
    );
    // The inspect line, run as printed from the same folder.
    let cmd = next.lines().next().unwrap().trim().split("   ").next().unwrap().to_string();
    let d = dir.path().to_path_buf();
    let o = tokio::task::spawn_blocking(move || {
        std::process::Command::new("sh").arg("-c").arg(&cmd).current_dir(d).output().unwrap()
    })
    .await
    .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    // Asked for: the sandbox lists an error[] file, the summary shows it apart, exit 5.
    let d = dir.path().to_path_buf();
    let o = tokio::task::spawn_blocking(move || {
        bin_in(&d).args(["demo", "-q", "--with-server-errors", "--out", "other"]).output().unwrap()
    })
    .await
    .unwrap();
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("\n  error/ (server errors)        1           1 "),
        "{}",
        text(&o)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verbose_logs_show_no_option_wrappers_and_no_line_twice() {
    let env = Env::new(SandboxConfig { error_file: false, ..Default::default() }).await;
    let path = env.write_job("v.yaml", &env.yaml("v", SMALL, ""));
    let o = run_bin(vec!["run".into(), "-v".into(), path.display().to_string()]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!stderr.contains("Some("), "{stderr}");
    // Without the timestamp, no line repeats (polls differ by their X-Progress).
    let mut seen = std::collections::BTreeSet::new();
    for l in stderr.lines() {
        let rest = l.split_once(' ').map_or(l, |x| x.1);
        assert!(seen.insert(rest.to_string()), "repeated: {rest}\n{stderr}");
    }
    assert_eq!(stderr.matches("access token obtained").count(), 1, "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_named_twice_runs_once_and_status_finds_jobs_without_being_told() {
    let env = Env::new(SandboxConfig { error_file: false, ..Default::default() }).await;
    let path = env.write_job("t.yaml", &env.yaml("t", SMALL, ""));
    let again = env.dir.path().join(".").join("t.yaml");
    let o = run_bin(vec!["run".into(), path.display().to_string(), again.display().to_string()]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(stdout.matches("t: complete (transactionTime").count(), 1, "{stdout}");
    assert!(!stdout.contains("jobs (exit code, outcome)"), "one job, no table: {stdout}");
    let note = format!("WARN {} is named more than once; running it once\n", again.display());
    assert!(String::from_utf8_lossy(&o.stderr).contains(&note), "{}", text(&o));
    assert_eq!(env.sandbox.kickoff_count(), 1);

    // `status` with no job file: every job folder under exports/ (here --out).
    let o = run_bin(vec!["status".into(), "--out".into(), env.out().display().to_string()]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(s.starts_with(&format!("t  ({})\n  last complete run: ", env.out().join("t").display())), "{s}");
    let empty = tempfile::tempdir().unwrap();
    let o = tokio::task::spawn_blocking({
        let d = empty.path().to_path_buf();
        move || bin_in(&d).arg("status").output().unwrap()
    })
    .await
    .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "error: exports: No such file or directory (os error 2); name the job files (oneup-bulk status jobs/*.yaml) or the output folder (--out DIR)\n"
    );
}
