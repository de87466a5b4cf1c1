//! Exports straight to object storage (issue 15), against a real S3 server process on 127.0.0.1 (see
//! `s3.rs`) and the real binary: the data, the record, `latest`, the state and the lease in the bucket.
//! The helpers take any [`Remote`], so `azure.rs` runs the same checks against Azurite.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use oneup_bulk::record::RunRecord;
use oneup_bulk::sandbox::{BadLine, Faults, SandboxConfig};
use oneup_bulk::store::Expect;
use oneup_bulk::store::lease::LeaseDoc;

use crate::harness::*;
use crate::s3::{ACCESS_KEY, Bucket, Proxy, SECRET_KEY, server};

/// A bucket (or an Azure container) on a test storage server, as these tests use it.
pub(crate) trait Remote: Sync {
    /// `download.dir` for the jobs.
    fn url(&self) -> String;
    /// The prefix `rel` (under `exports/`), read with the real client.
    fn dir(&self, rel: &str) -> oneup_bulk::store::ObjectDir;
    /// Sets the environment of a `oneup-bulk` command to reach this bucket.
    fn env(&self, c: &mut Command);

    async fn get(&self, rel: &str) -> Option<Vec<u8>> {
        self.dir("").get(rel).await.unwrap().map(|(b, _)| b.to_vec())
    }

    /// Every key under `exports/`, relative to it.
    async fn keys(&self) -> Vec<String> {
        self.dir("").list("").await.unwrap().into_iter().map(|(k, _)| k).collect()
    }
}

impl Remote for Bucket {
    fn url(&self) -> String {
        Bucket::url(self)
    }
    fn dir(&self, rel: &str) -> oneup_bulk::store::ObjectDir {
        Bucket::dir(self, rel)
    }
    fn env(&self, c: &mut Command) {
        Bucket::env(self, c)
    }
}

pub(crate) const EXPORT: &str = "  level: system\n  types: [Patient, Coverage, ExplanationOfBenefit]\n";

/// A job file `t` writing to the bucket.
pub(crate) fn job_file(env: &Env, b: &impl Remote, export: &str, extra: &str) -> std::path::PathBuf {
    let local = format!("  dir: {}\n", env.out().display());
    let yaml = env.yaml("t", export, extra).replace(&local, &format!("  dir: {}\n", b.url()));
    env.write_job("t.yaml", &yaml)
}

pub(crate) fn cmd(b: &impl Remote, cwd: &Path, args: &[&str]) -> Command {
    let mut c = bin();
    b.env(&mut c);
    c.current_dir(cwd).args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    c
}

/// Waits (bounded) until the job's lease is free: released, or not renewed within its ttl.
pub(crate) async fn wait_lease_free(b: &impl Remote) {
    for _ in 0..400 {
        let doc = b.get("t/.state/lease").await.map(|l| serde_json::from_slice::<LeaseDoc>(&l).unwrap());
        if doc.is_none_or(|d| d.is_free(time::OffsetDateTime::now_utc())) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the lease stayed held");
}

pub(crate) async fn run(b: &impl Remote, cwd: &Path, args: &[&str]) -> Output {
    let mut c = cmd(b, cwd, args);
    tokio::task::spawn_blocking(move || c.output().expect("binary runs")).await.unwrap()
}

pub(crate) fn done_or_5(o: &Output) {
    assert!(matches!(o.status.code(), Some(0 | 5)), "{}", text(o));
}

pub(crate) async fn record(b: &impl Remote) -> (String, RunRecord) {
    let run_id = String::from_utf8(b.get("t/latest").await.expect("latest")).unwrap().trim().to_string();
    let rec = serde_json::from_slice(&b.get(&format!("t/{run_id}/run.json")).await.expect("run.json")).unwrap();
    (run_id, rec)
}

/// Every recorded file in the bucket is the server's bytes, with the recorded sha256 and count.
pub(crate) async fn assert_bucket_matches_server(env: &Env, b: &impl Remote) -> usize {
    let (run_id, rec) = record(b).await;
    assert!(rec.complete);
    for f in &rec.files {
        let stored = b.get(&format!("t/{run_id}/{}", f.path)).await.unwrap_or_else(|| panic!("{} missing", f.path));
        assert!(stored == server_bytes(env, &f.url).await, "{} differs from what the server sent", f.path);
        assert_eq!(f.sha256, sha256_hex(&stored), "{}", f.path);
        assert_eq!(f.bytes, stored.len() as u64);
    }
    rec.files.len()
}

pub(crate) fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_export_lands_in_the_bucket_with_its_record_and_latest() {
    let Some(s3) = server("a_whole_export_lands_in_the_bucket") else { return };
    let b = s3.bucket().await;
    let outputs = whole_export_lands(&b).await;
    assert_eq!(b.open_uploads().await, 0, "no multipart upload left open");
    // No credential anywhere: output of the run and inspect, and every object.
    let mut everything = outputs;
    for k in b.keys().await {
        everything.push_str(&String::from_utf8_lossy(&b.get(&k).await.unwrap()));
    }
    for secret in [SECRET_KEY, ACCESS_KEY, SECRET] {
        assert!(!everything.contains(secret), "{secret} leaked");
    }
}

/// A whole export to `b`, with files over one part (8 MiB): the server's bytes, the layout of a run and
/// nothing half-written, the lease let go, nothing written locally, and `inspect` of `latest` passing.
/// Returns what the run and `inspect` printed, for the store's own checks (open uploads, credentials).
pub(crate) async fn whole_export_lands(b: &impl Remote) -> String {
    let env = Env::new(SandboxConfig { data_scale: 300, ..Default::default() }).await;
    let job = job_file(&env, b, EXPORT, "");
    let cwd = tmp();
    let o = run(b, cwd.path(), &["run", "-vv", "--log-format", "json", job.to_str().unwrap()]).await;
    done_or_5(&o);
    let n = assert_bucket_matches_server(&env, b).await;
    assert_eq!(n, 4, "three types and the error file");
    let (run_id, rec) = record(b).await;
    assert!(rec.files.iter().any(|f| f.bytes > 8 << 20), "a file spans several parts");
    let mut keys = b.keys().await;
    keys.retain(|k| !k.starts_with(&format!("t/{run_id}/")) || !rec.files.iter().any(|f| k.ends_with(&f.path)));
    assert_eq!(
        keys,
        [
            "t/.state/checkpoint.json".to_string(),
            "t/.state/lease".into(),
            format!("t/{run_id}/log/events.ndjson"),
            format!("t/{run_id}/manifest.json"),
            format!("t/{run_id}/run.json"),
            "t/latest".into(),
        ],
        "the layout of a run, and nothing half-written"
    );
    let lease: LeaseDoc = serde_json::from_slice(&b.get("t/.state/lease").await.unwrap()).unwrap();
    assert!(lease.released, "the lease is let go at the end");
    assert!(!cwd.path().join("exports").exists(), "nothing written locally");

    // inspect reads the run from the bucket.
    let target = format!("{}/t/latest", b.url());
    let i = run(b, cwd.path(), &["inspect", &target]).await;
    assert_eq!(i.status.code(), Some(0), "{}", text(&i));
    let checks = text(&i).lines().find(|l| l.contains("against the record")).unwrap_or_default().to_string();
    assert!(
        checks.starts_with("  against the record: all ") && checks.ends_with(" checks pass (counts, sha256, files)"),
        "{}",
        text(&i)
    );
    text(&o) + &text(&i)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_failure_leaves_no_object_under_a_final_name() {
    let Some(s3) = server("strict_failure_leaves_no_object_under_a_final_name") else { return };
    let env = Env::new(SandboxConfig {
        faults: Faults { bad_line: Some(BadLine::NotJson), ..Default::default() },
        ..Default::default()
    })
    .await;
    let b = s3.bucket().await;
    strict_failure_publishes_nothing(&env, &b).await;
    assert_eq!(b.open_uploads().await, 0);
}

/// A strict failure (the sandbox's bad line) fails the run and leaves no object under a final name.
pub(crate) async fn strict_failure_publishes_nothing(env: &Env, b: &impl Remote) {
    let job = job_file(env, b, EXPORT, "");
    let o = run(b, tmp().path(), &["run", job.to_str().unwrap()]).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let keys = b.keys().await;
    let data: Vec<_> = keys.iter().filter(|k| k.ends_with(".ndjson") && !k.contains("/log/")).collect();
    let run_dir = keys.iter().find(|k| k.ends_with("/run.json")).expect("run.json").trim_end_matches("run.json");
    let rec: RunRecord = serde_json::from_slice(&b.get(&format!("{run_dir}run.json")).await.unwrap()).unwrap();
    assert!(!rec.complete);
    for f in rec.files.iter().filter(|f| f.invalid_lines > 0) {
        assert!(!data.iter().any(|k| k.ends_with(&f.path)), "{} kept though it failed strict checks", f.path);
        assert!(rec.problems.iter().any(|p| p.file.as_deref() == Some(&f.path) && p.message.contains("not kept")));
    }
    assert!(!keys.contains(&"t/latest".to_string()), "latest names complete runs only");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_upload_then_rerun_from_another_folder_completes_with_one_kick_off() {
    let Some(s3) = server("killed_mid_upload_then_rerun") else { return };
    let env = Env::new(SandboxConfig {
        data_scale: 60,
        faults: Faults { file_bytes_per_sec: Some(3_000_000), ..Default::default() },
        ..Default::default()
    })
    .await;
    let b = s3.bucket().await;
    let job = job_file(&env, &b, EXPORT, "  concurrency: 1\n");
    let first_cwd = tmp();
    // A short lease, so the rerun can take over from the killed run without a minute's wait.
    let mut c = cmd(&b, first_cwd.path(), &["run", "-q", job.to_str().unwrap()]);
    let mut child = c.env("ONEUP_BULK_LEASE_TTL", "3s").spawn().unwrap();
    let state = b.dir("t/.state");
    // Killed once a file is verified and the next one's upload is open.
    for _ in 0..2000 {
        let done =
            state.get("inflight.json").await.unwrap().is_some_and(|(s, _)| s.windows(8).any(|w| w == b"\"sha256\""));
        if done && !state.list("uploads").await.unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(b.open_uploads().await, 1, "the killed run left its upload open");
    let before = only_verified_files_have_final_names(&b).await;
    env.sandbox.faults().clear();
    let o = run(&b, tmp().path(), &["run", job.to_str().unwrap()]).await;
    assert_eq!(o.status.code(), Some(75), "the killed run's lease is still fresh: {}", text(&o));
    wait_lease_free(&b).await;
    rerun_takes_over_with_one_kick_off(&env, &b, &job, &before).await;
    assert_eq!(b.open_uploads().await, 0, "the stale upload was aborted");
    assert!(state.list("uploads").await.unwrap().is_empty());
}

/// Right after a kill: the export in flight, whose verified files alone have final names in its run folder.
pub(crate) async fn only_verified_files_have_final_names(b: &impl Remote) -> oneup_bulk::state::InFlight {
    let before: oneup_bulk::state::InFlight =
        serde_json::from_slice(&b.get("t/.state/inflight.json").await.unwrap()).unwrap();
    let run_dir = format!("t/{}/", before.run_id.clone().unwrap());
    let finals: Vec<_> =
        b.keys().await.into_iter().filter(|k| k.starts_with(&run_dir) && k.ends_with(".ndjson")).collect();
    assert_eq!(finals.len(), before.done.len(), "only verified files have final names: {finals:?}");
    before
}

/// The rerun after a kill (its lease free): it takes the lease over and completes the same export (one
/// kick-off in all) without fetching again what `before` had verified. Returns its output.
pub(crate) async fn rerun_takes_over_with_one_kick_off(
    env: &Env,
    b: &impl Remote,
    job: &Path,
    before: &oneup_bulk::state::InFlight,
) -> Output {
    let o = run(b, tmp().path(), &["run", job.to_str().unwrap()]).await;
    done_or_5(&o);
    assert!(text(&o).contains("took over the job's lease from a run that stopped renewing it (pid "), "{}", text(&o));
    assert_eq!(env.sandbox.kickoff_count(), 1, "exactly one kick-off");
    let first = &before.done[0];
    let fetches = env.sandbox.requests().iter().filter(|r| first.url.ends_with(&r.path)).count();
    assert_eq!(fetches, 1, "{} was downloaded again", first.path);
    assert_bucket_matches_server(env, b).await;
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_at_once_one_refused_naming_the_holder() {
    let Some(s3) = server("two_runs_at_once") else { return };
    let env = Env::long_export(100).await;
    one_of_two_runs_refused(&env, &s3.bucket().await).await;
}

/// Two runs of one job at once: exactly one refused (exit 75) naming the other's pid; one kick-off.
pub(crate) async fn one_of_two_runs_refused(env: &Env, b: &impl Remote) {
    let job = job_file(env, b, EXPORT, "");
    let (a, c) = (tmp(), tmp());
    let spawn = |cwd: &Path| cmd(b, cwd, &["run", job.to_str().unwrap()]).spawn().unwrap();
    let (first, second) = (spawn(a.path()), spawn(c.path()));
    let pids = [first.id(), second.id()];
    let outs =
        tokio::task::spawn_blocking(move || [first.wait_with_output().unwrap(), second.wait_with_output().unwrap()])
            .await
            .unwrap();
    let codes: Vec<_> = outs.iter().map(|o| o.status.code()).collect();
    let refused: Vec<_> = outs.iter().zip(pids).filter(|(o, _)| o.status.code() == Some(75)).collect();
    assert_eq!(refused.len(), 1, "exactly one refused: {codes:?}");
    let winner = pids.into_iter().find(|p| *p != refused[0].1).unwrap();
    let t = text(refused[0].0);
    assert!(t.contains(&format!("another oneup-bulk process holds this job (pid {winner} on ")), "{t}");
    assert_eq!(env.sandbox.kickoff_count(), 1);
    assert_bucket_matches_server(env, b).await;
}

pub(crate) fn lease_doc(renewed: &str, host: &str) -> Vec<u8> {
    let d = LeaseDoc {
        host: host.into(),
        pid: 4242,
        started: "2026-01-01T00:00:00Z".into(),
        renewed: renewed.into(),
        ttl_secs: 60,
        released: false,
    };
    serde_json::to_vec(&d).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_lease_refuses_and_a_stale_one_is_taken_over() {
    let Some(s3) = server("a_stale_lease_is_taken_over") else { return };
    let env = Env::default().await;
    let b = s3.bucket().await;
    let job = job_file(&env, &b, EXPORT, "");
    let state = b.dir("t/.state");
    state.put("lease", lease_doc(&oneup_bulk::instant::now(), "node-alive").into()).await.unwrap();
    let o = run(&b, tmp().path(), &["run", job.to_str().unwrap()]).await;
    assert_eq!(o.status.code(), Some(75), "{}", text(&o));
    assert!(
        text(&o)
            .contains("another oneup-bulk process holds this job (pid 4242 on node-alive since 2026-01-01T00:00:00Z)"),
        "{}",
        text(&o)
    );
    assert_eq!(env.sandbox.kickoff_count(), 0);
    state.put("lease", lease_doc("2026-01-01T00:00:00Z", "node-gone").into()).await.unwrap();
    let o = run(&b, tmp().path(), &["run", job.to_str().unwrap()]).await;
    done_or_5(&o);
    assert!(
        text(&o).contains(
            "took over the job's lease from a run that stopped renewing it (pid 4242 on node-gone since 2026-01-01T00:00:00Z)"
        ),
        "{}",
        text(&o)
    );
    assert_bucket_matches_server(&env, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_lease_is_taken_stops_with_75() {
    let Some(s3) = server("a_run_whose_lease_is_taken_stops_with_75") else { return };
    let env = Env::long_export(100_000).await;
    let b = s3.bucket().await;
    let job = job_file(&env, &b, EXPORT, "");
    let cwd = tmp();
    let mut c = cmd(&b, cwd.path(), &["run", job.to_str().unwrap()]);
    c.env("ONEUP_BULK_LEASE_TTL", "3s");
    let child = c.spawn().unwrap();
    let state = b.dir("t/.state");
    // Take the lease from under the run, conditionally (its renewals may win a round or two).
    let mut taken = false;
    for _ in 0..2000 {
        if let Some((_, v)) = state.get("lease").await.unwrap() {
            let intruder = lease_doc(&oneup_bulk::instant::now(), "intruder").into();
            if state.put_if("lease", intruder, &Expect::Version(v)).await.is_ok() {
                taken = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(taken, "the lease was taken");
    let o = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()).await.unwrap();
    assert_eq!(o.status.code(), Some(75), "{}", text(&o));
    assert!(text(&o).contains("/t/.state/lease was taken over by pid 4242 on intruder since "), "{}", text(&o));
    let lease: LeaseDoc = serde_json::from_slice(&state.get("lease").await.unwrap().unwrap().0).unwrap();
    assert_eq!(lease.host, "intruder", "the stopped run did not write over its successor");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_storage_server_restarting_mid_upload_is_retried() {
    let Some(s3) = server("the_storage_server_restarting_mid_upload_is_retried") else { return };
    let env = Env::new(SandboxConfig { data_scale: 150, ..Default::default() }).await;
    // Cut 3 MiB into the uploads (inside the first part of the largest file), down for a second.
    let proxy = Proxy::start(s3.port, 3 << 20, Duration::from_secs(1)).await;
    let b = s3.bucket_at(&proxy.endpoint()).await;
    let job = job_file(&env, &b, EXPORT, "");
    let o = run(&b, tmp().path(), &["run", "-v", job.to_str().unwrap()]).await;
    done_or_5(&o);
    assert_eq!(proxy.cuts.load(std::sync::atomic::Ordering::SeqCst), 1, "the server went away once");
    assert_bucket_matches_server(&env, &b).await;
    assert_eq!(b.open_uploads().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn since_auto_across_two_runs_with_the_checkpoint_in_the_bucket() {
    let Some(s3) = server("since_auto_across_two_runs") else { return };
    let env = Env::default().await;
    let b = s3.bucket().await;
    let job = job_file(&env, &b, "  level: system\n  types: [Patient]\n  since: auto\n", "");
    done_or_5(&run(&b, tmp().path(), &["run", job.to_str().unwrap()]).await);
    let (_, first) = record(&b).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    done_or_5(&run(&b, tmp().path(), &["run", job.to_str().unwrap()]).await);
    let kicks: Vec<_> = env.sandbox.requests().into_iter().filter(|r| r.path.starts_with("/fhir/$export?")).collect();
    assert_eq!(kicks.len(), 2);
    let since = |p: &str| {
        url::Url::parse(&format!("http://x{p}"))
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "_since")
            .map(|(_, v)| v.into_owned())
    };
    assert_eq!(since(&kicks[0].path), None);
    let sent = since(&kicks[1].path).expect("the second run sends _since");
    let t = |s: &str| oneup_bulk::instant::parse(s).unwrap();
    assert_eq!(t(&sent), t(&first.transaction_time));
    let c: oneup_bulk::state::Checkpoint =
        serde_json::from_slice(&b.get("t/.state/checkpoint.json").await.unwrap()).unwrap();
    assert_eq!(c.history.len(), 2);
    let (_, second) = record(&b).await;
    assert_eq!(c.transaction_time.as_deref(), Some(second.transaction_time.as_str()));
    // `status` reads the same state from the bucket.
    let o = run(&b, tmp().path(), &["status", job.to_str().unwrap()]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let first_lines: Vec<_> = out.lines().take(3).collect();
    assert_eq!(first_lines[0], format!("t  ({}/t)", b.url()));
    assert_eq!(first_lines[2], format!("  checkpoint (since: auto): {}", second.transaction_time));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_error_names_the_bucket_and_no_credential() {
    let Some(s3) = server("a_storage_error_names_the_bucket") else { return };
    let env = Env::default().await;
    let mut b = s3.bucket().await;
    b.name = "no-such-bucket".into();
    let job = job_file(&env, &b, EXPORT, "");
    let o = run(&b, tmp().path(), &["run", "-vv", job.to_str().unwrap()]).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("s3://no-such-bucket/exports/t/.state/lease"), "{}", text(&o));
    for secret in [SECRET_KEY, ACCESS_KEY] {
        assert!(!text(&o).contains(secret), "{secret} leaked: {}", text(&o));
    }
    assert_eq!(env.sandbox.kickoff_count(), 0, "nothing sent to the FHIR server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_of_the_state_cannot_both_win() {
    let Some(s3) = server("two_writers_of_the_state_cannot_both_win") else { return };
    two_state_writers_cannot_both_win(&s3.bucket().await).await;
}

/// The state's conditional puts (create-if-absent, then if-the-ETag-matches) against the real store.
pub(crate) async fn two_state_writers_cannot_both_win(b: &impl Remote) {
    use oneup_bulk::state::{InFlight, JobState};
    use oneup_bulk::store::Dir;
    let (one, two) = (JobState::at(Dir::Object(b.dir("t"))), JobState::at(Dir::Object(b.dir("t"))));
    assert!(one.inflight().unwrap().is_none());
    assert!(two.inflight().unwrap().is_none());
    let url = url::Url::parse("https://fhir.example/$export-status/1").unwrap();
    let s = InFlight::new("e1".into(), &url, &url, "GET", None);
    one.save_inflight(&s).unwrap();
    let conflict = format!(
        "{}/t/.state/inflight.json was changed by another run of this job; this run stops without writing more state",
        b.url()
    );
    // Both saw no state; only the first create wins.
    let e = two.save_inflight(&s).unwrap_err();
    assert_eq!((e.exit_code(), e.to_string()), (75, conflict.clone()));
    // The second reads the first's write; then the first writes again: the second's version is stale.
    assert_eq!(two.inflight().unwrap().as_ref(), Some(&s));
    one.save_inflight(&InFlight { last_progress: Some("50%".into()), ..s.clone() }).unwrap();
    let e = two.save_inflight(&s).unwrap_err();
    assert_eq!((e.exit_code(), e.to_string()), (75, conflict));
    assert_eq!(one.inflight().unwrap().unwrap().last_progress.as_deref(), Some("50%"));
}
