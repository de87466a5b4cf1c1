//! The same answers from a bucket (against the S3 test server, see `tests/engine/s3.rs`): a run
//! interrupted mid-download is incomplete, and the job's prefix lists its runs, before and after the
//! rerun that finishes it.

use std::process::Output;

use oneup_bulk::sandbox::{Faults, FileCut, RetryAfterStyle, SandboxConfig};

use crate::harness::{Env, bin, text};
use crate::s3::{Bucket, server};

async fn run(b: &Bucket, args: Vec<String>) -> Output {
    let mut c = bin();
    b.env(&mut c);
    c.args(args);
    tokio::task::spawn_blocking(move || c.output().expect("binary runs")).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_run_in_a_bucket_is_incomplete_and_its_job_lists_it() {
    let Some(s3) = server("an_interrupted_run_in_a_bucket_is_incomplete") else { return };
    let cut = FileCut { pattern: "ExplanationOfBenefit".into(), bytes: 100, times: 1000 };
    let faults = Faults { file_cut_after: Some(cut), ..Default::default() };
    let env = Env::new(SandboxConfig { retry_after: RetryAfterStyle::Seconds(0), faults, ..Default::default() }).await;
    let b = s3.bucket().await;
    let export = "  level: system\n  types: [Patient, Coverage, ExplanationOfBenefit]\n";
    let local = format!("  dir: {}\n", env.out().display());
    let yaml = env
        .yaml("t", export, "")
        .replace(&local, &format!("  dir: {}\n", b.url()))
        .replace("  retries: 3\n", "  retries: 1\n  concurrency: 1\n");
    let job = env.write_job("t.yaml", &yaml).display().to_string();
    let o = run(&b, vec!["run".into(), "-q".into(), job.clone()]).await;
    assert_eq!(o.status.code(), Some(75), "{}", text(&o));
    let keys = b.keys().await;
    let run_id = keys
        .iter()
        .find_map(|k| k.strip_prefix("t/")?.strip_suffix("/manifest.json").filter(|id| !id.starts_with('.')))
        .unwrap()
        .to_string();
    let (job_url, run_url) = (format!("{}/t", b.url()), format!("{}/t/{run_id}", b.url()));

    let o = run(&b, vec!["inspect".into(), run_url.clone()]).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        out.contains("\n  incomplete: no run.json: the run was interrupted and its export is still in flight"),
        "{out}"
    );
    let o = run(&b, vec!["inspect".into(), job_url.clone()]).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(out.starts_with(&format!("{job_url} (job folder: 1 run)\n")), "{out}");
    assert!(out.contains(&format!("  {run_id:<24} interrupted ")), "{out}");

    env.sandbox.faults().clear();
    let o = run(&b, vec!["run".into(), "-q".into(), job]).await;
    assert!(matches!(o.status.code(), Some(0 | 5)), "{}", text(&o));
    let o = run(&b, vec!["inspect".into(), job_url.clone()]).await;
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(out.contains(&format!("  {run_id:<24} complete ")) && out.contains("  ← latest\n"), "{out}");
    assert!(out.contains(&format!("check the latest complete run: oneup-bulk inspect {job_url}/latest\n")), "{out}");
    let o = run(&b, vec!["inspect".into(), format!("{job_url}/latest")]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}
