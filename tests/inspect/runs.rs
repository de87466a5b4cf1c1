//! Run folders made by real runs against the in-process sandbox (a demo-like run; a run interrupted
//! mid-download, then finished), and the text reports of the hand-made cases, compared whole.

use oneup_bulk::inspect::{InspectOptions, inspect, render_problems, render_text};
use oneup_bulk::sandbox::{Faults, FileCut, RetryAfterStyle, SandboxConfig};

use crate::fixture::*;
use crate::harness::Env;

/// The demo's job: six types, strict validation.
const DEMO_EXPORT: &str =
    "  level: system\n  types: [Patient, Coverage, ExplanationOfBenefit, Encounter, Observation, Condition]\n";
/// 2026-01-01T00:00:00Z: the synthetic data's `lastUpdated` fall in the year before, the same every day.
const ANCHOR: i64 = 1_767_225_600;

fn config(faults: Faults) -> SandboxConfig {
    SandboxConfig { data_anchor: Some(ANCHOR), retry_after: RetryAfterStyle::Seconds(0), faults, ..Default::default() }
}

fn report_text(opts: &InspectOptions) -> (String, u8) {
    let r = inspect(opts).unwrap();
    let mut out = Vec::new();
    render_text(&r, &mut out).unwrap();
    (String::from_utf8(out).unwrap(), r.exit_code())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demo_like_run_checked_with_its_references() {
    let env = Env::new(config(Faults::default())).await;
    let job = env.job_from(&env.yaml("t", DEMO_EXPORT, "  validate: strict\n"));
    let out = env.run(&job).await.unwrap();
    let mut o = opts(&env.out().join("t/latest"));
    o.check_references = true;
    let (text, code) = report_text(&o);
    assert_eq!(code, 0, "{text}");
    snap!("demo_like_run_check_references", text);
    assert!(out.run_dir.join("run.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_interrupted_mid_download_then_finished() {
    let cut = FileCut { pattern: "ExplanationOfBenefit".into(), bytes: 100, times: 1000 };
    let env = Env::new(config(Faults { file_cut_after: Some(cut), ..Default::default() })).await;
    let export = "  level: system\n  types: [Patient, Coverage, ExplanationOfBenefit]\n";
    let yaml = env.yaml("t", export, "").replace("  retries: 3\n", "  retries: 1\n  concurrency: 1\n");
    let job = env.job_from(&yaml);
    assert_eq!(env.run(&job).await.unwrap_err().exit_code(), 75, "interrupted, the state kept");
    let job_dir = env.out().join("t");
    let run_id = std::fs::read_dir(&job_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| !n.starts_with('.'))
        .expect("the run folder");
    let (text, code) = report_text(&opts(&job_dir.join(&run_id)));
    assert_eq!(code, 1, "{text}");
    snap!("interrupted_run", text);
    let (text, code) = report_text(&opts(&job_dir));
    assert_eq!(code, 2, "{text}");
    snap!("interrupted_run_job_folder", text);

    env.sandbox.faults().clear();
    env.run(&job).await.unwrap();
    let (text, code) = report_text(&opts(&job_dir));
    assert_eq!(code, 2);
    snap!("finished_run_job_folder", text);
    assert_eq!(report_text(&opts(&job_dir.join(&run_id))).1, 0, "the same folder, now whole");
}

#[test]
fn text_of_a_record_that_says_incomplete() {
    let d = tempfile::tempdir().unwrap();
    run_folder_with(d.path(), false, &["the manifest says 3, the file holds 2"]);
    snap!("record_incomplete", report_text(&opts(d.path())).0);
}

#[test]
fn text_of_a_broken_gzip_stream() {
    let d = tempfile::tempdir().unwrap();
    let body: String = (0..300).map(|i| format!("{{\"resourceType\":\"Patient\",\"id\":\"p{i}\"}}\n")).collect();
    let mut gz = gzip(body.as_bytes());
    gz.truncate(gz.len() / 2);
    std::fs::write(d.path().join("Patient.ndjson.gz"), gz).unwrap();
    std::fs::write(d.path().join("Coverage.ndjson"), COVERAGE).unwrap();
    let (text, code) = report_text(&opts(d.path()));
    assert_eq!(code, 1);
    snap!("gzip_cut", text);
    let r = inspect(&opts(d.path())).unwrap();
    let mut out = Vec::new();
    render_problems(&r, 20, &mut out).unwrap();
    snap!("gzip_cut_invalid", String::from_utf8(out).unwrap());
}

#[test]
fn text_of_one_file_from_a_run() {
    let d = tempfile::tempdir().unwrap();
    run_folder(d.path());
    snap!("one_file_of_a_run", report_text(&opts(&d.path().join("Coverage.ndjson"))).0);
}

#[test]
fn text_of_deleted_bundles_and_skipped_references() {
    let d = tempfile::tempdir().unwrap();
    crate::cases::deleted_and_other_references(d.path());
    let mut o = opts(d.path());
    o.check_references = true;
    snap!("deleted_and_skipped_references", report_text(&o).0);
}

#[test]
fn text_of_a_checksum_only_failure() {
    let d = tempfile::tempdir().unwrap();
    run_folder(d.path());
    std::fs::write(d.path().join("Patient.ndjson"), PATIENTS.replace("\"2\"", "\"3\"")).unwrap();
    snap!("checksum_only", report_text(&opts(d.path())).0);
}
