//! States a crash or an operator leaves behind (issue 18): a run folder deleted by hand, verified files
//! gone from disk, an export the server lost, `cancel` on a lost export or a held lock, an unreadable
//! state file. Each ends in a complete run on the next try, or in one clear message that names the
//! exact command to type; never in a failure that every rerun repeats.

use oneup_bulk::error::Error;
use oneup_bulk::export::advice::{self, JobCmd, Left};
use oneup_bulk::sandbox::{Faults, FileCut, SandboxConfig};
use oneup_bulk::state::{InFlight, JobState, LockHolder};

use crate::harness::*;

const EXPORT: &str = "  level: system\n  types: [Patient, Coverage, ExplanationOfBenefit]\n";

fn in_flight(env: &Env) -> InFlight {
    serde_json::from_slice(&std::fs::read(env.inflight()).unwrap()).unwrap()
}

/// A sandbox whose ExplanationOfBenefit file is always cut: the run verifies the other files, then
/// gives up with the state kept (exit 75).
async fn failing_last_file(pages: Option<usize>) -> (Env, String) {
    let cut = FileCut { pattern: "ExplanationOfBenefit".into(), bytes: 100, times: 1000 };
    let env = Env::new(SandboxConfig {
        manifest_page_size: pages,
        faults: Faults { file_cut_after: Some(cut), ..Default::default() },
        ..Default::default()
    })
    .await;
    let yaml = env.yaml("t", EXPORT, "").replace("  retries: 3\n", "  retries: 1\n  concurrency: 1\n");
    (env, yaml)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_folder_deleted_by_hand_is_made_again_and_downloaded() {
    let (env, yaml) = failing_last_file(Some(1)).await;
    let path = env.write_job("k.yaml", &yaml);
    let out = env.out().display().to_string();
    let args = || vec!["run".into(), "-q".into(), "--out".into(), out.clone(), path.display().to_string()];
    let o = run_bin(args()).await;
    assert_eq!(o.status.code(), Some(75), "{}", text(&o));
    // What to type next, with the job's path and the --out it was run with.
    let cmd = JobCmd::new(path.display().to_string(), Some(&env.out()));
    let next = advice::next_steps(&cmd, &Error::Transient(String::new()), &Left::InFlight);
    let port = env.sandbox.fhir_base().port().unwrap();
    let cut =
        format!("error: job t: ExplanationOfBenefit.ndjson: connection to 127.0.0.1:{port} cut while reading the body");
    assert!(stderr(&o).starts_with(&cut), "{}", stderr(&o));
    assert!(stderr(&o).ends_with(&next), "{}", stderr(&o));
    let before = in_flight(&env);
    assert!(!before.done.is_empty() && before.done.iter().all(|d| d.resource_type != "ExplanationOfBenefit"));
    let run_dir = env.out().join("t").join(before.run_id.as_deref().expect("the manifest had arrived"));
    assert!(run_dir.join("manifest.003.json").exists(), "three manifest pages");
    std::fs::remove_dir_all(&run_dir).unwrap();

    env.sandbox.faults().clear();
    let polls = env.status_gets();
    let o = run_bin(args()).await;
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    assert_eq!(env.sandbox.kickoff_count(), 1, "the same export, not a new one");
    assert_eq!(env.status_gets(), polls, "the manifest and its pages came from the state folder");
    for d in &before.done {
        let fetches = env.sandbox.requests().iter().filter(|r| d.url.ends_with(&r.path)).count();
        assert_eq!(fetches, 2, "{} was deleted with the folder and fetched again", d.path);
    }
    // Every page is back (the check counts them against the files), and every file matches the server.
    let done = env.latest_run();
    assert_eq!(done.run_dir.canonicalize().unwrap(), run_dir.canonicalize().unwrap());
    assert_run_matches_server(&env, &done).await;
    assert!(!env.inflight().exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verified_file_missing_on_disk_is_fetched_again() {
    let (env, yaml) = failing_last_file(None).await;
    let job = env.job_from(&yaml);
    assert_eq!(env.run(&job).await.unwrap_err().exit_code(), 75);
    let before = in_flight(&env);
    let gone = &before.done[0];
    let run_dir = env.out().join("t").join(before.run_id.as_deref().unwrap());
    std::fs::remove_file(run_dir.join(&gone.path)).unwrap();
    env.sandbox.faults().clear();
    let out = env.run(&job).await.unwrap();
    let fetches = |url: &str| env.sandbox.requests().iter().filter(|r| url.ends_with(&r.path)).count();
    assert_eq!(fetches(&gone.url), 2, "{} is fetched again", gone.path);
    for kept in &before.done[1..] {
        assert_eq!(fetches(&kept.url), 1, "{} is on disk and kept", kept.path);
    }
    assert_eq!(env.sandbox.kickoff_count(), 1);
    assert_run_matches_server(&env, &out).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_lost_while_polling_is_replaced_in_the_same_run() {
    let env = Env::long_export(3).await;
    env.sandbox.faults().update(|f| f.lose_exports_on = Some("$export-status".into()));
    let path = env.write_job("k.yaml", &env.yaml("t", EXPORT, ""));
    let o = run_bin(vec!["run".into(), path.display().to_string()]).await;
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    assert_eq!(env.sandbox.kickoff_count(), 2, "a new export, in the same run");
    let err = stderr(&o);
    assert!(
        err.contains("the server no longer has this export (the status URL answered 404"),
        "the replacement is said: {err}"
    );
    assert!(err.contains("starting a new export now"), "{err}");
    assert!(!env.inflight().exists(), "the new export completed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_lost_during_downloads_is_replaced_in_the_same_run() {
    let env = Env::default().await;
    env.sandbox.faults().update(|f| f.lose_exports_on = Some("/files/".into()));
    let job = env.job(EXPORT);
    let out = env.run(&job).await.unwrap();
    assert_eq!(env.sandbox.kickoff_count(), 2);
    assert!(!env.inflight().exists(), "never a 404 on every rerun");
    assert_run_matches_server(&env, &out).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_on_a_lost_export_says_it_is_already_gone() {
    let env = Env::long_export(1000).await;
    let path = env.write_job("k.yaml", &env.yaml("t", EXPORT, ""));
    let mut child = bin().arg("run").arg(&path).arg("-q").spawn().unwrap();
    env.wait_in_flight().await;
    child.kill().unwrap();
    child.wait().unwrap();
    // The server restarts and forgets its exports; the next request (the DELETE) finds nothing.
    env.sandbox.faults().update(|f| f.lose_exports_on = Some("$export-status".into()));
    let o = run_bin(vec!["cancel".into(), "-q".into(), path.display().to_string()]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "t: the server no longer has this export (HTTP 404): it was already gone; forgotten here\n"
    );
    assert!(!env.inflight().exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_while_a_run_holds_the_job_names_the_process_to_stop() {
    let env = Env::long_export(1000).await;
    let path = env.write_job("k.yaml", &env.yaml("t", EXPORT, ""));
    let mut child = bin().arg("run").arg(&path).arg("-q").spawn().unwrap();
    env.wait_in_flight().await;
    let lock = env.out().join("t/.state/lock");
    wait_until("the holder line", || std::fs::read_to_string(&lock).is_ok_and(|s| s.ends_with('\n'))).await;
    let holder = LockHolder::parse(&std::fs::read_to_string(&lock).unwrap());
    assert_eq!(holder.pid, Some(child.id()));
    let e = Error::Locked(holder);
    let cmd = JobCmd::new(path.display().to_string(), None);
    let expected = format!("error: {e}\n{}", advice::next_steps(&cmd, &e, &Left::InFlight));
    assert!(expected.contains(&format!("stop it with `kill {}`", child.id())), "{expected}");
    for force in [false, true] {
        let mut args = vec!["cancel".to_string(), "-q".into(), path.display().to_string()];
        if force {
            args.insert(1, "--force".into()); // a live holder on this host is never overridden
        }
        let o = run_bin(args).await;
        assert_eq!(o.status.code(), Some(75), "{}", text(&o));
        assert_eq!(stderr(&o), expected);
        assert!(env.inflight().exists());
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let o = run_bin(vec!["cancel".into(), "-q".into(), path.display().to_string()]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(!env.inflight().exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_state_file_names_the_way_out_and_force_sets_it_aside() {
    let env = Env::default().await;
    let path = env.write_job("k.yaml", &env.yaml("t", EXPORT, ""));
    let state = JobState::new(&env.out().join("t"));
    state.create().unwrap();
    std::fs::write(env.inflight(), "{\"export_id\": \"cut sh").unwrap();
    let e = state.inflight().unwrap_err();
    let cmd = JobCmd::new(path.display().to_string(), None);
    let next = advice::next_steps(&cmd, &e, &Left::Unreadable(env.inflight()));
    assert!(next.contains(&format!("oneup-bulk cancel --force {}", path.display())), "{next}");
    let p = path.display().to_string();
    let o = run_bin(vec!["run".into(), "-q".into(), p.clone()]).await;
    assert_eq!((o.status.code(), stderr(&o)), (Some(1), format!("error: job t: {e}\n{next}")));
    let o = run_bin(vec!["cancel".into(), "-q".into(), p.clone()]).await;
    assert_eq!((o.status.code(), stderr(&o)), (Some(1), format!("error: {e}\n{next}")));
    assert_eq!(env.sandbox.requests().len(), 0, "nothing was sent");

    let o = run_bin(vec!["cancel".into(), "--force".into(), "-q".into(), p.clone()]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "t: the unreadable state was set aside; nothing was sent to the server (no status URL could be read)\n"
    );
    assert!(env.out().join("t/.state/inflight.json.unreadable").exists());
    // `run --restart` sets one aside too, and the run goes on.
    std::fs::write(env.inflight(), "[]").unwrap();
    let o = run_bin(vec!["run".into(), "--restart".into(), "-q".into(), p]).await;
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_force_breaks_a_lock_left_by_another_host() {
    let env = Env::default().await;
    let path = env.write_job("k.yaml", &env.yaml("t", EXPORT, ""));
    let state = JobState::new(&env.out().join("t"));
    // This test process holds the lock, as a machine sharing the folder would; its line names that host.
    let held = state.lock().unwrap();
    let line = "pid 4242 on other-host.example since 2026-01-01T00:00:00Z\n";
    std::fs::write(env.out().join("t/.state/lock"), line).unwrap();
    let p = path.display().to_string();
    let o = run_bin(vec!["cancel".into(), "-q".into(), p.clone()]).await;
    let e = Error::Locked(LockHolder::parse(line));
    let next = advice::next_steps(&JobCmd::new(p.clone(), None), &e, &Left::Nothing);
    assert_eq!((o.status.code(), stderr(&o)), (Some(75), format!("error: {e}\n{next}")));
    assert!(next.contains("  if other-host.example is gone for good, break its lock:\n"), "{next}");
    let o = run_bin(vec!["cancel".into(), "--force".into(), p.clone()]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "t: no export in flight; nothing to cancel\n");
    assert!(text(&o).contains("--force: breaking the lock held by pid 4242 on other-host.example"), "{}", text(&o));
    let o = run_bin(vec!["run".into(), "-q".into(), p]).await;
    assert_eq!(o.status.code(), Some(5), "the job runs again: {}", text(&o));
    drop(held);
}
