//! Faults injected by the sandbox (issue 4): each ends in a complete, byte-identical run, or in a clear
//! failure with the state kept, never in a wrong file under a final name or a second export.

use oneup_bulk::sandbox::{Faults, FileCut, RetryAfterStyle, SandboxConfig};

use crate::harness::*;

const EXPORT: &str = "  level: system\n  types: [Patient, Coverage, ExplanationOfBenefit]\n";

async fn run_with(faults: Faults) -> (Env, oneup_bulk::app::RunOutcome) {
    let env = Env::new(SandboxConfig { faults, ..Default::default() }).await;
    let out = env.run(&env.job(EXPORT)).await.expect("the run survives the fault");
    assert_run_matches_server(&env, &out).await;
    (env, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kickoff_429_with_retry_after_is_waited_out() {
    let (env, _) = run_with(Faults { kickoff_429: 2, ..Default::default() }).await;
    assert_eq!(env.sandbox.kickoff_count(), 1);
    let attempts = env.sandbox.requests().iter().filter(|r| r.path.starts_with("/fhir/$export?")).count();
    assert_eq!(attempts, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_503_then_recovery() {
    run_with(Faults { status_503: 2, ..Default::default() }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_429_then_recovery() {
    run_with(Faults { status_429: 2, ..Default::default() }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_operation_outcome_is_retried() {
    run_with(Faults { status_transient_oo: 2, ..Default::default() }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_endpoint_500_is_retried() {
    run_with(Faults { token_500: 2, ..Default::default() }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_token_401_at_each_stage_is_renewed_once() {
    for stage in ["/$export?", "$export-status", "/files/"] {
        let env = Env::new(SandboxConfig {
            faults: Faults { reject_token_on: Some(stage.into()), ..Default::default() },
            ..Default::default()
        })
        .await;
        let out = env.run(&env.job(EXPORT)).await.expect("the run survives the 401");
        let tokens = env.sandbox.requests().iter().filter(|r| r.path == "/auth/token").count();
        let unauthorized_then_retried = env.sandbox.requests().iter().filter(|r| r.path.contains(stage)).count() >= 2;
        assert!(unauthorized_then_retried, "{stage}");
        assert_run_matches_server(&env, &out).await;
        assert_eq!(tokens, 2, "{stage}: one token, one renewal after the 401");
        assert_eq!(env.sandbox.kickoff_count(), 1, "{stage}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_500_is_retried() {
    run_with(Faults { file_500: 2, ..Default::default() }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_connection_resumes_with_range_where_allowed() {
    let cut = FileCut { pattern: "ExplanationOfBenefit".into(), bytes: 10_000, times: 2 };
    let (env, _) = run_with(Faults { file_cut_after: Some(cut), ..Default::default() }).await;
    let ranged: Vec<_> = env.sandbox.requests().into_iter().filter(|r| r.header("range").is_some()).collect();
    assert_eq!(ranged.len(), 2, "two resumes");
    assert_eq!(ranged[0].header("range"), Some("bytes=10000-"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_connection_restarts_where_ranges_are_not_allowed() {
    let cut = FileCut { pattern: "ExplanationOfBenefit".into(), bytes: 10_000, times: 2 };
    let env = Env::new(SandboxConfig {
        accept_ranges: false,
        faults: Faults { file_cut_after: Some(cut), ..Default::default() },
        ..Default::default()
    })
    .await;
    let out = env.run(&env.job(EXPORT)).await.unwrap();
    let eob = env
        .sandbox
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/files/") && r.path.contains("ExplanationOfBenefit"))
        .count();
    assert_eq!(eob, 3, "two cut attempts, then a whole one");
    assert_run_matches_server(&env, &out).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_gzip_body_starts_again_without_a_range() {
    // A gzip body cannot be resumed (ranges are over the encoded bytes): the cut is a restart, not exit 1.
    let cut = FileCut { pattern: "ExplanationOfBenefit".into(), bytes: 2_000, times: 2 };
    let env = Env::new(SandboxConfig {
        gzip: true,
        faults: Faults { file_cut_after: Some(cut), ..Default::default() },
        ..Default::default()
    })
    .await;
    let out = env.run(&env.job(EXPORT)).await.expect("a cut gzip body is fetched again");
    let eob: Vec<_> = env
        .sandbox
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/files/") && r.path.contains("ExplanationOfBenefit"))
        .collect();
    assert_eq!(eob.len(), 3, "two cut attempts, then a whole one");
    for r in &eob {
        assert_eq!((r.header("range"), r.header("accept-encoding")), (None, Some("gzip")));
    }
    assert_run_matches_server(&env, &out).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_body_is_fetched_again() {
    run_with(Faults { file_short_body: 1, ..Default::default() }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_404_after_expiry_clears_the_state() {
    let env =
        Env::new(SandboxConfig { faults: Faults { status_404: true, ..Default::default() }, ..Default::default() })
            .await;
    let job = env.job(EXPORT);
    let err = env.run(&job).await.unwrap_err();
    assert_eq!(err.exit_code(), 75);
    assert!(err.to_string().contains("the next run starts a new one"), "{err}");
    assert_eq!(env.sandbox.kickoff_count(), 2, "replaced once in the same run, then given up");
    assert!(!env.inflight().exists(), "the state is cleared");
    env.sandbox.faults().clear();
    env.run(&job).await.unwrap();
    assert_eq!(env.sandbox.kickoff_count(), 3, "a fresh export after the expired ones");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_are_bounded_and_keep_the_state() {
    let env = Env::new(SandboxConfig {
        faults: Faults { status_503: 1000, ..Default::default() },
        retry_after: RetryAfterStyle::Seconds(0),
        ..Default::default()
    })
    .await;
    let err = env.run(&env.job(EXPORT)).await.unwrap_err();
    assert_eq!(err.exit_code(), 75, "{err}");
    assert!(env.inflight().exists());
    let polls = env.sandbox.requests().iter().filter(|r| r.path.contains("$export-status")).count();
    assert_eq!(polls, 4, "one try and three retries (download.retries: 3)");
}

fn kill9(child: &mut std::process::Child) {
    // SIGKILL: no chance to clean up, like the OOM killer or a node going away.
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_while_polling_then_rerun_resumes_the_same_export() {
    let env = Env::long_export(60).await;
    let path = env.write_job("k.yaml", &env.yaml("t", EXPORT, ""));
    let mut child = bin().arg("run").arg(&path).arg("-q").spawn().unwrap();
    env.wait_in_flight().await;
    kill9(&mut child);
    let o = run_bin(vec!["run".into(), path.display().to_string()]).await;
    assert!(matches!(o.status.code(), Some(0 | 5)), "{}", text(&o));
    assert_eq!(env.sandbox.kickoff_count(), 1, "exactly one kick-off");
    let job = env.job_from(&env.yaml("t", EXPORT, ""));
    let out = env.latest_run();
    assert_run_matches_server(&env, &out).await;
    drop(job);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_while_downloading_then_rerun_keeps_verified_files() {
    let env = Env::new(SandboxConfig {
        data_scale: 20,
        faults: Faults { file_bytes_per_sec: Some(2_000_000), ..Default::default() },
        ..Default::default()
    })
    .await;
    let yaml = env.yaml("t", EXPORT, "").replace("  retries: 3\n", "  retries: 3\n  concurrency: 1\n");
    let path = env.write_job("k.yaml", &yaml);
    let mut child = bin().arg("run").arg(&path).arg("-q").spawn().unwrap();
    let state = env.inflight();
    wait_until("the first verified file", || std::fs::read_to_string(&state).is_ok_and(|s| s.contains("\"sha256\"")))
        .await;
    kill9(&mut child);
    let before: oneup_bulk::state::InFlight = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert!(!before.done.is_empty());
    env.sandbox.faults().clear();
    let o = run_bin(vec!["run".into(), path.display().to_string()]).await;
    assert!(matches!(o.status.code(), Some(0 | 5)), "{}", text(&o));
    assert_eq!(env.sandbox.kickoff_count(), 1, "exactly one kick-off");
    // Files verified before the kill were not fetched again.
    let first = &before.done[0];
    let fetches = env.sandbox.requests().iter().filter(|r| first.url.ends_with(&r.path)).count();
    assert_eq!(fetches, 1, "{} was downloaded again", first.path);
    let out = env.latest_run();
    assert_run_matches_server(&env, &out).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_of_the_same_job_is_refused() {
    let env = Env::long_export(100).await;
    let path = env.write_job("k.yaml", &env.yaml("t", EXPORT, ""));
    let mut first = bin().arg("run").arg(&path).arg("-q").spawn().unwrap();
    env.wait_in_flight().await;
    let o = run_bin(vec!["run".into(), path.display().to_string()]).await;
    let t = text(&o);
    assert_eq!(o.status.code(), Some(75), "{t}");
    assert!(t.contains("another oneup-bulk process holds this job (pid "), "{t}");
    kill9(&mut first);
    // The dead holder's lock does not block the next run.
    let o = run_bin(vec!["run".into(), path.display().to_string()]).await;
    assert!(matches!(o.status.code(), Some(0 | 5)), "{}", text(&o));
    assert_eq!(env.sandbox.kickoff_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_is_exit_1_naming_the_path_and_earlier_runs_stay() {
    let env = Env::new(SandboxConfig { data_scale: 10, ..Default::default() }).await;
    let mnt = env.dir.path().join("tiny");
    std::fs::create_dir(&mnt).unwrap();
    let test = "disk_full_is_exit_1_naming_the_path_and_earlier_runs_stay";
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return skipped(test, "not root: mounting a 256 KiB tmpfs needs root");
    }
    let mount =
        std::process::Command::new("mount").args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"]).arg(&mnt).output();
    match mount {
        Err(e) => return skipped(test, &format!("no mount command: {e}")),
        Ok(o) if !o.status.success() => {
            let why = String::from_utf8_lossy(&o.stderr);
            return skipped(test, &format!("mount -t tmpfs failed ({}): {}", o.status, why.trim()));
        }
        Ok(_) => {}
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(mnt.clone());
    let yaml = |types: &str| {
        env.yaml("t", &format!("  level: system\n  types: [{types}]\n"), "")
            .replace(&format!("dir: {}", env.out().display()), &format!("dir: {}", mnt.display()))
    };
    let first = env.run(&env.job_from(&yaml("Patient"))).await.expect("a small run fits");
    let err = env.run(&env.job_from(&yaml("ExplanationOfBenefit"))).await.unwrap_err();
    assert_eq!(err.exit_code(), 1, "{err}");
    assert!(err.to_string().contains(&mnt.display().to_string()), "names the path: {err}");
    // The earlier run is untouched.
    for f in &first.record.files {
        let bytes = std::fs::read(first.run_dir.join(&f.path)).unwrap();
        assert_eq!(sha256_hex(&bytes), f.sha256);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unwritable_output_is_exit_1_naming_the_path() {
    let env = Env::default().await;
    let not_a_dir = env.dir.path().join("file");
    std::fs::write(&not_a_dir, "x").unwrap();
    let yaml = env
        .yaml("t", EXPORT, "")
        .replace(&format!("dir: {}", env.out().display()), &format!("dir: {}/sub", not_a_dir.display()));
    let err = env.run(&env.job_from(&yaml)).await.unwrap_err();
    assert_eq!(err.exit_code(), 1, "{err}");
    assert!(err.to_string().contains(&not_a_dir.display().to_string()), "{err}");
    assert_eq!(env.sandbox.kickoff_count(), 0, "nothing is started when the output cannot be written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_signed_urls_are_renewed_from_the_status_url() {
    let env = Env::new(SandboxConfig {
        requires_access_token: false,
        faults: Faults { file_403: 2, signed_file_urls: true, ..Default::default() },
        ..Default::default()
    })
    .await;
    let out = env.run(&env.job(EXPORT)).await.expect("fresh URLs are fetched and the run completes");
    assert_eq!(env.sandbox.kickoff_count(), 1, "renewed, not replaced");
    let status_gets = env.status_gets();
    // Two 202s and the manifest, then at least one more GET for fresh URLs.
    assert!(status_gets >= 4, "the status URL was asked again for fresh URLs ({status_gets} GETs)");
    assert_run_matches_server(&env, &out).await;
}
