//! Exports that end on the server's side (issue 18): file links that expire (renewed from the status
//! URL, else the export replaced by a new one in the same run, once), and exports the server failed
//! (exit 4 at once, the state cleared), against faults that are only temporary (retried).

use oneup_bulk::sandbox::{Faults, SandboxConfig};

use crate::field::fetches;
use crate::harness::*;

const EXPORT: &str = "  level: system\n  types: [Patient, Coverage, ExplanationOfBenefit]\n";

async fn env_with(requires_access_token: bool, faults: Faults) -> Env {
    Env::new(SandboxConfig { requires_access_token, faults, ..Default::default() }).await
}

/// The job file at `path`, loaded as `run` loads it (so messages name its path).
fn load(path: &std::path::Path) -> oneup_bulk::job::Job {
    oneup_bulk::job::load(path, &|v| (v == "TEST_SECRET").then(|| SECRET.to_string())).unwrap()
}

/// Run folders of job `t`, oldest first (run ids are UTC instants, so they sort by time).
fn run_dirs(env: &Env) -> Vec<std::path::PathBuf> {
    let mut dirs: Vec<_> = std::fs::read_dir(env.out().join("t"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir() && !p.ends_with(".state") && !p.ends_with("latest"))
        .collect();
    dirs.sort();
    dirs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_410_link_is_renewed_and_verified_files_are_kept() {
    // A token-carrying download answered 410: an expired link, renewed like a signed URL.
    let env = env_with(true, Faults { file_410: 1, signed_file_urls: true, ..Default::default() }).await;
    let job = env.job_from(&env.yaml("t", EXPORT, "  concurrency: 1\n"));
    let out = env.run(&job).await.expect("fresh links are fetched and the run completes");
    assert_eq!((out.exit_code, env.sandbox.kickoff_count()), (5, 1));
    assert_eq!(env.status_gets(), 4, "two 202s, the manifest, one more for fresh links");
    // One 410, then every file once: nothing verified is fetched twice.
    assert_eq!(fetches(&env, ""), out.record.files.len() + 1);
    assert!(out.record.files.iter().all(|f| f.url.ends_with("?sig=1")), "the files came from the fresh links");
    assert!(!env.inflight().exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_expired_link_again_means_a_new_export_in_the_same_run() {
    // Links that cannot be renewed (the status URL hands back the same one) belong to an export the
    // server no longer has: it is replaced once, in the same run.
    let env = env_with(false, Faults { file_403: 1, ..Default::default() }).await;
    let out = env.run(&env.job(EXPORT)).await.expect("the new export completes");
    assert_eq!((out.exit_code, out.record.complete, env.sandbox.kickoff_count()), (5, true, 2));
    let dirs = run_dirs(&env);
    assert_eq!(dirs.len(), 2);
    assert_eq!(dirs[1], out.run_dir);
    // The abandoned export's folder keeps what was verified and its log, and is marked incomplete.
    assert!(!dirs[0].join("run.json").exists());
    assert!(dirs[0].join("log/events.ndjson").exists());
    assert!(dirs[0].join("manifest.json").exists());
    assert_eq!(std::fs::read_link(env.out().join("t/latest")).unwrap(), out.run_dir.file_name().unwrap());
    assert!(!env.inflight().exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_fresh_links_twice_ends_75_with_the_state_cleared() {
    let env = env_with(false, Faults { file_403: 1000, ..Default::default() }).await;
    let path = env.write_job("j.yaml", &env.yaml("t", EXPORT, "  concurrency: 1\n"));
    let job = load(&path);
    let err = env.run(&job).await.unwrap_err();
    assert_eq!((err.exit_code(), env.sandbox.kickoff_count()), (75, 2), "{err}");
    let second = run_dirs(&env).pop().unwrap();
    let file = path.display();
    assert_eq!(
        err.to_string(),
        format!(
            "the server no longer has this export (Patient.ndjson: the status URL handed back the same expired \
             link); the next run starts a new one (`oneup-bulk run {file}`). The state is cleared; the files \
             verified so far stay in {} (incomplete: no run.json)",
            second.display()
        )
    );
    assert!(!env.inflight().exists(), "a rerun starts afresh instead of failing on the same export");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_url_gone_when_asked_for_fresh_links_means_a_new_export() {
    let env = env_with(true, Faults { file_410: 1, forget_after_manifest: true, ..Default::default() }).await;
    let job = env.job_from(&env.yaml("t", EXPORT, "  concurrency: 1\n"));
    let out = env.run(&job).await.expect("the new export completes");
    assert_eq!((out.exit_code, env.sandbox.kickoff_count()), (5, 2));
    assert_run_matches_server(&env, &out).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_synchronous_export_whose_link_expired_is_asked_for_again() {
    let env = env_with(true, Faults { sync_kickoff: true, file_410: 1, ..Default::default() }).await;
    let out = env.run(&env.job(EXPORT)).await.expect("a synchronous export has no status URL: kicked off again");
    assert_eq!((out.exit_code, env.sandbox.kickoff_count(), env.status_gets()), (5, 2, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_links_that_stay_refused_end_with_exit_3_and_the_state_kept() {
    let env = env_with(false, Faults { file_403: 1000, signed_file_urls: true, ..Default::default() }).await;
    let path = env.write_job("j.yaml", &env.yaml("t", EXPORT, "  concurrency: 1\n"));
    let job = load(&path);
    let err = env.run(&job).await.unwrap_err();
    assert_eq!((err.exit_code(), env.sandbox.kickoff_count(), env.status_gets()), (3, 1, 3 + 3), "{err}");
    let file = path.display();
    assert_eq!(
        err.to_string(),
        format!(
            "authorization refused by Patient.ndjson: the file URLs kept being refused after fresh ones were \
             fetched 3 times (check auth.token_origins and the manifest's requiresAccessToken); the state is kept: \
             `oneup-bulk run {file}` continues this export, `oneup-bulk run --restart {file}` starts a new one"
        )
    );
    assert!(env.inflight().exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kickoff_500_with_a_failed_outcome_is_exit_4_at_once() {
    let failed = Some((500, "File generation failed".to_string()));
    let env = env_with(true, Faults { kickoff_error: failed, ..Default::default() }).await;
    let err = env.run(&env.job(EXPORT)).await.unwrap_err();
    assert_eq!(err.exit_code(), 4, "{err}");
    assert_eq!(err.to_string(), "the server rejected the export: HTTP 500 on kick-off: File generation failed");
    let kickoffs = env.sandbox.requests().iter().filter(|r| r.path.starts_with("/fhir/$export?")).count();
    assert_eq!(kickoffs, 1, "not retried");
    assert!(!env.inflight().exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_500_with_a_failed_outcome_is_exit_4_and_the_next_run_starts_afresh() {
    let failed = Some((500, "File generation failed".to_string()));
    let env = env_with(true, Faults { status_error: failed, ..Default::default() }).await;
    let path = env.write_job("j.yaml", &env.yaml("t", EXPORT, ""));
    let o = run_bin(vec!["run".into(), path.display().to_string(), "-q".into()]).await;
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    let file = path.display();
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        format!(
            "error: job t: the server rejected the export: the export failed on the server (HTTP 500): File \
             generation failed; the state is cleared: the next run (`oneup-bulk run {file}`) starts a new export\n"
        )
    );
    assert_eq!(env.status_gets(), 1, "not retried");
    assert!(!env.inflight().exists());
    env.sandbox.faults().clear();
    let o = run_bin(vec!["run".into(), path.display().to_string(), "-q".into()]).await;
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    assert_eq!(env.sandbox.kickoff_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_500_without_an_outcome_is_retried() {
    let env = env_with(true, Faults { status_500_no_outcome: 2, ..Default::default() }).await;
    let out = env.run(&env.job(EXPORT)).await.expect("a proxy's 500 is temporary");
    assert_eq!((out.exit_code, env.sandbox.kickoff_count(), env.status_gets()), (5, 1, 5));
}
