//! Unattended runs (issue 5): `since: auto`, checkpoints, exit codes, logs for machines, status and cancel.

use std::time::Duration;

use oneup_bulk::sandbox::{BadLine, Faults, SandboxConfig};

use crate::harness::*;

const EXPORT: &str = "  level: system\n  types: [Patient, Coverage]\n  since: auto\n";

fn since_param(path: &str) -> Option<String> {
    let url = url::Url::parse(&format!("http://x{path}")).ok()?;
    url.query_pairs().find(|(k, _)| k == "_since").map(|(_, v)| v.into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn since_auto_uses_the_last_complete_run() {
    let env = Env::default().await;
    let job = env.job(EXPORT);
    let first = env.run(&job).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let second = env.run(&job).await.unwrap();
    let kicks: Vec<_> = env.sandbox.requests().into_iter().filter(|r| r.path.starts_with("/fhir/$export?")).collect();
    assert_eq!(kicks.len(), 2);
    assert_eq!(since_param(&kicks[0].path), None, "the first run is a full export");
    let sent = since_param(&kicks[1].path).expect("the second run sends _since");
    let t = |s: &str| time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap();
    assert_eq!(t(&sent), t(&first.record.transaction_time));
    assert_ne!(first.record.run_id, second.record.run_id);
    let c = oneup_bulk::state::JobState::new(&env.out().join("t")).checkpoint().unwrap();
    assert_eq!(c.transaction_time.as_deref(), Some(second.record.transaction_time.as_str()));
    assert_eq!(c.history.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_run_leaves_the_checkpoint_where_it_was() {
    let env = Env::default().await;
    // A full export each time (with `since: auto` the second would be empty, and so valid).
    let job = env.job("  level: system\n  types: [Patient, Coverage]\n");
    let first = env.run(&job).await.unwrap();
    env.sandbox.faults().update(|f| f.bad_line = Some(BadLine::NotJson));
    let out = env.run(&job).await.unwrap();
    assert_eq!(out.exit_code, 1, "strict validation fails the run");
    assert!(!out.record.complete);
    assert!(out.record.problems.iter().any(|p| p.line == Some(2)), "{:?}", out.record.problems);
    let c = oneup_bulk::state::JobState::new(&env.out().join("t")).checkpoint().unwrap();
    assert_eq!(c.transaction_time.as_deref(), Some(first.record.transaction_time.as_str()));
    assert_eq!(std::fs::read_link(env.out().join("t/latest")).unwrap().to_string_lossy(), first.record.run_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_0_when_complete_and_5_when_the_server_reported_errors() {
    for (error_file, code) in [(false, 0), (true, 5)] {
        let env = Env::new(SandboxConfig { error_file, ..Default::default() }).await;
        let p = env.write_job("e.yaml", &env.yaml("t", EXPORT, ""));
        let o = run_bin(vec!["run".into(), p.display().to_string()]).await;
        assert_eq!(o.status.code(), Some(code), "{}", text(&o));
        if code == 5 {
            assert!(text(&o).contains("the server reported 1 error: see "), "{}", text(&o));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_for_the_binary() {
    let env = Env::default().await;
    // 0 / 5: complete (the sandbox's error[] file makes it 5 when on).
    let ok = env.write_job("ok.yaml", &env.yaml("ok", EXPORT, ""));
    let o = run_bin(vec!["run".into(), ok.display().to_string()]).await;
    assert!(matches!(o.status.code(), Some(0 | 5)), "{}", text(&o));
    // 2: a bad job file, nothing sent.
    let before = env.sandbox.requests().len();
    let bad = env.write_job("bad.yaml", "name: x\nacess: bulk-data\n");
    let o = run_bin(vec!["run".into(), bad.display().to_string()]).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert_eq!(env.sandbox.requests().len(), before);
    // 1: strict validation fails.
    env.sandbox.faults().update(|f| f.bad_line = Some(BadLine::WrongResourceType));
    let strict = env.write_job("strict.yaml", &env.yaml("strict", EXPORT, ""));
    let o = run_bin(vec!["run".into(), strict.display().to_string()]).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    env.sandbox.faults().clear();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_and_sigterm_keep_the_state() {
    for (sig, code) in [("INT", 130), ("TERM", 143)] {
        let env = Env::long_export(1000).await;
        let path = env.write_job("k.yaml", &env.yaml("t", EXPORT, ""));
        let child = bin().arg("run").arg(&path).stderr(std::process::Stdio::piped()).spawn().unwrap();
        let inflight = env.inflight();
        env.wait_in_flight().await;
        let pid = child.id().to_string();
        std::process::Command::new("kill").args([&format!("-{sig}"), &pid]).status().unwrap();
        let o = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()).await.unwrap();
        let t = text(&o);
        assert_eq!(o.status.code(), Some(code), "{sig}: {t}");
        let what = if sig == "INT" { "Ctrl-C" } else { "SIGTERM" };
        assert!(t.contains(&format!("interrupted ({what}) during job t; its state is kept")), "{t}");
        assert!(t.contains(&format!(" run {}\n", path.display())), "the resume hint names the job file: {t}");
        assert!(t.contains(&format!(" cancel {}\n", path.display())), "{t}");
        assert!(inflight.exists(), "state kept after SIG{sig}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_and_event_log_for_machines() {
    let env =
        Env::new(SandboxConfig { faults: Faults { status_503: 1, ..Default::default() }, ..Default::default() }).await;
    let path = env.write_job("j.yaml", &env.yaml("t", EXPORT, ""));
    let o = run_bin(vec!["run".into(), "--log-format".into(), "json".into(), path.display().to_string()]).await;
    assert!(matches!(o.status.code(), Some(0 | 5)), "{}", text(&o));
    let stderr = String::from_utf8(o.stderr).unwrap();
    assert!(!stderr.is_empty());
    for line in stderr.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v.get("level").is_some() && v.get("timestamp").is_some(), "{line}");
    }
    assert!(!stderr.contains('\u{1b}'), "no escape codes when stderr is not a terminal");
    let log = std::fs::read_to_string(env.out().join("t/latest/log/events.ndjson")).unwrap();
    let events: Vec<String> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["eventId"].as_str().unwrap().to_string())
        .collect();
    let order = [
        "kickoff",
        "status_progress",
        "status_complete",
        "manifest_complete",
        "download_request",
        "download_complete",
        "export_complete",
    ];
    let mut pos = 0;
    for e in &events {
        if pos < order.len() && e == order[pos] {
            pos += 1;
        } else if let Some(i) = order.iter().position(|o| o == e) {
            assert!(i < pos || e.starts_with("download") || e == "status_progress", "{e} out of order in {events:?}");
        }
    }
    assert_eq!(pos, order.len(), "{events:?}");
    assert_eq!(events.last().map(String::as_str), Some("export_complete"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_cancel() {
    let env = Env::long_export(1000).await;
    let path = env.write_job("s.yaml", &env.yaml("t", EXPORT, ""));
    let o = run_bin(vec!["status".into(), path.display().to_string()]).await;
    assert!(text(&o).contains("last complete run: none"), "{}", text(&o));
    let mut child = bin().arg("run").arg(&path).arg("-q").spawn().unwrap();
    let inflight = env.inflight();
    env.wait_in_flight().await;
    let o = run_bin(vec!["status".into(), path.display().to_string()]).await;
    let t = text(&o);
    assert!(t.contains("in flight: http://127.0.0.1:"), "{t}");
    assert!(t.contains("running now: pid"), "{t}");
    child.kill().unwrap();
    child.wait().unwrap();
    let o = run_bin(vec!["cancel".into(), path.display().to_string()]).await;
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(t.contains("deleted the export"), "{t}");
    assert!(!inflight.exists());
    assert!(env.sandbox.requests().iter().any(|r| r.method == "DELETE"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_jobs_worst_exit_code_and_a_summary() {
    let env =
        Env::new(SandboxConfig { faults: Faults { kickoff_error: None, ..Default::default() }, ..Default::default() })
            .await;
    let a = env.write_job("a.yaml", &env.yaml("a", EXPORT, ""));
    let wrong = env.yaml("b", EXPORT, "").replace("${TEST_SECRET}", "not-the-secret");
    let b = env.write_job("b.yaml", &wrong);
    let o =
        run_bin(vec!["run".into(), "--parallel".into(), "2".into(), a.display().to_string(), b.display().to_string()])
            .await;
    let t = text(&o);
    assert_eq!(o.status.code(), Some(3), "{t}");
    assert!(t.contains("jobs (exit code, outcome)"), "{t}");
    assert!(env.out().join("a/latest/run.json").exists(), "one failing job does not stop the others");
}
