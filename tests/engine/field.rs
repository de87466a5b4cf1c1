//! Server behaviours met in the field (issue 18): what the SMART reference server, 1up and the Bulk Data
//! v3/STU4 manifests do that a strict reading of v2 does not expect. Each is injected by a sandbox
//! switch and ends in a documented outcome: the exit code, the files, `run.json` and the state.

use oneup_bulk::record::{FileKind, MIXED, Problem};
use oneup_bulk::sandbox::{Faults, SandboxConfig};

use crate::harness::*;

const EXPORT: &str = "  level: system\n  types: [Patient, Coverage, ExplanationOfBenefit]\n";

async fn env_with(faults: Faults) -> Env {
    Env::new(SandboxConfig { faults, ..Default::default() }).await
}

/// File requests whose path contains `needle`.
pub fn fetches(env: &Env, needle: &str) -> usize {
    env.sandbox.requests().iter().filter(|r| r.path.starts_with("/files/") && r.path.contains(needle)).count()
}

fn warning(file: &str, message: &str) -> Problem {
    Problem { file: Some(file.into()), line: None, message: message.into() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_counts_are_informative_a_warning_and_exit_5() {
    // The SMART reference server copies the failed output's count into the error entry.
    let env = env_with(Faults { error_count: Some(639), ..Default::default() }).await;
    let out = env.run(&env.job(EXPORT)).await.expect("the error file is kept as it is");
    assert_eq!((out.exit_code, out.record.complete), (5, true));
    assert_eq!(fetches(&env, "OperationOutcome"), 1, "fetched once, not retried");
    let e = out.record.files.iter().find(|f| f.kind == FileKind::Error).unwrap();
    assert_eq!((e.path.as_str(), e.expected_count, e.lines), ("error/OperationOutcome.ndjson", Some(639), 1));
    let expected = vec![warning(
        "error/OperationOutcome.ndjson",
        "the manifest's error[] entry says 639, the file holds 1: error[] counts are informative (some servers \
         copy the failed output's count there); the file is kept",
    )];
    assert_eq!(out.record.warnings, expected);
    assert_eq!(read_record(&out.run_dir).warnings, expected, "run.json says so too");
    assert!(out.record.problems.is_empty());
    assert!(!env.inflight().exists());
    // `inspect` does not hold an informative count against the file either.
    let opts = oneup_bulk::inspect::InspectOptions { paths: vec![out.run_dir.clone()], ..Default::default() };
    assert!(oneup_bulk::inspect::inspect(&opts).unwrap().whole);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn organized_output_is_downloaded_counted_by_type_and_inspected_by_type() {
    let env = Env::new(SandboxConfig { files_per_type: 2, ..Default::default() }).await;
    let job = env.job("  level: system\n  types: [Patient, Condition, Observation]\n  organize_output_by: Patient\n");
    let out = env.run(&job).await.expect("a v3 organized manifest is read");
    assert_eq!((out.exit_code, out.record.complete), (5, true));
    assert_run_matches_server(&env, &out).await;
    let organized: Vec<_> = out.record.files.iter().filter(|f| f.kind == FileKind::Output).collect();
    let paths: Vec<_> = organized.iter().map(|f| (f.path.as_str(), f.resource_type.as_str())).collect();
    assert_eq!(paths, vec![("organized.001.ndjson", MIXED), ("organized.002.ndjson", MIXED)]);
    assert_eq!(organized[0].continues_in.as_deref(), Some("organized.002.ndjson"));
    assert_eq!(organized[1].continues_in, None);
    // Counted from the content: one header per block, and the block split across the files has two.
    let sum = |t: &str| organized.iter().map(|f| f.types.get(t).copied().unwrap_or(0)).sum::<u64>();
    assert_eq!((sum("Patient"), sum("Parameters")), (10, 11));
    assert_eq!(organized.iter().map(|f| f.header_lines).sum::<u64>(), 11);
    assert!(sum("Condition") > 0 && sum("Observation") > 0);
    for f in &organized {
        assert_eq!(f.types.values().sum::<u64>(), f.lines, "{}", f.path);
        assert_eq!((f.invalid_lines, f.wrong_type_lines), (0, 0));
    }
    // Totals count resources without the headers.
    let lines: u64 = organized.iter().map(|f| f.lines).sum();
    assert_eq!(out.record.totals.resources, lines - 11);
    // `inspect` reports them by type, the headers as Parameters.
    let opts = oneup_bulk::inspect::InspectOptions { paths: vec![out.run_dir.clone()], ..Default::default() };
    let report = oneup_bulk::inspect::inspect(&opts).unwrap();
    assert!(report.whole, "{:?}", report.inputs[0].checks);
    let types: Vec<(String, u64)> =
        report.inputs[0].types.iter().map(|t| (t.resource_type.clone(), t.resources)).collect();
    let want: Vec<(String, u64)> =
        ["Condition", "Observation", "Parameters", "Patient"].iter().map(|t| (t.to_string(), sum(t))).collect();
    assert_eq!(types, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_file_that_never_matches_its_count_is_kept_and_fails_strictly() {
    // The reference server's second Encounter file: `count: 15`, served empty, every time.
    let env = env_with(Faults { phantom_file: Some(15), ..Default::default() }).await;
    let path = env.write_job("j.yaml", &env.yaml("t", EXPORT, ""));
    let o = run_bin(vec!["run".into(), path.display().to_string(), "--no-progress".into()]).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(fetches(&env, "Patient.phantom"), 2, "two identical full fetches prove it");
    let run_dir = std::fs::read_dir(env.out().join("t"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.join("run.json").exists())
        .unwrap();
    let rec = read_record(&run_dir);
    let f = rec.files.iter().find(|f| f.path == "Patient.002.ndjson").unwrap();
    assert_eq!((f.expected_count, f.lines, f.bytes), (Some(15), 0, 0));
    assert_eq!(std::fs::read(run_dir.join("Patient.002.ndjson")).unwrap(), b"", "kept under its name");
    let job = path.display().to_string();
    let problem = format!(
        "the manifest says 15 resources, the file holds 0; 2 full fetches gave the same bytes (sha256 \
         e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855), so this is what the server has. The \
         file is kept; to accept such files set `download.accept_count_mismatch: true` in {job} and run \
         `oneup-bulk run {job}` (a new export)"
    );
    assert_eq!(rec.problems[1], warning("Patient.002.ndjson", &problem));
    assert!(!rec.complete);
    assert!(text(&o).contains(&format!("  problem: Patient.002.ndjson: {problem}\n")), "{}", text(&o));
    // Not "temporary": nothing is left in flight, the checkpoint and `latest` did not move.
    assert!(!env.inflight().exists());
    assert!(!env.out().join("t/latest").exists());

    // Accepted by the job: a warning, and the normal exit code (5: the server's error file).
    let accept = env.write_job("a.yaml", &env.yaml("t", EXPORT, "  accept_count_mismatch: true\n"));
    let o = run_bin(vec!["run".into(), accept.display().to_string()]).await;
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    let rec = read_record(&env.out().join("t/latest"));
    let message = "the manifest says 15 resources, the file holds 0; 2 full fetches gave the same bytes, so it is \
                   kept as the server has it (download.accept_count_mismatch: true)";
    assert_eq!(rec.warnings, vec![warning("Patient.002.ndjson", message)]);
    assert!(rec.complete && rec.problems.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_still_being_written_is_fetched_again_until_it_agrees() {
    let env = env_with(Faults { file_drop_last_line: 1, ..Default::default() }).await;
    let out = env.run(&env.job(EXPORT)).await.unwrap();
    assert_eq!((out.exit_code, fetches(&env, "Patient.ndjson")), (5, 2));
    assert!(out.record.warnings.is_empty());
    assert_run_matches_server(&env, &out).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_count_is_proven_only_by_two_identical_fetches_in_a_row() {
    // First fetch short (changing), then the whole file twice: the count is wrong, not the transfer.
    let env = env_with(Faults { count_mismatch: true, file_drop_last_line: 1, ..Default::default() }).await;
    let out = env.run(&env.job(EXPORT)).await.unwrap();
    assert_eq!((out.exit_code, out.record.complete, fetches(&env, "Patient.ndjson")), (1, false, 3));
    let f = &out.record.files[0];
    assert_eq!((f.path.as_str(), f.expected_count, f.lines), ("Patient.ndjson", Some(11), 10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kickoff_answered_with_the_manifest_is_a_completed_export() {
    let env = env_with(Faults { sync_kickoff: true, ..Default::default() }).await;
    let job = env.job_from(&env.yaml("t", EXPORT, "  delete_on_success: true\n"));
    let out = env.run(&job).await.expect("a synchronous export is accepted");
    assert_eq!((out.exit_code, out.record.complete, env.sandbox.kickoff_count()), (5, true, 1));
    assert_run_matches_server(&env, &out).await;
    let status = env.sandbox.requests().iter().filter(|r| r.path.contains("$export-status")).count();
    assert_eq!(status, 0, "nothing to poll, and no DELETE of the kick-off URL");
    assert_eq!(out.record.status_url, out.record.request);
    assert!(!env.inflight().exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kickoff_answered_with_200_and_no_manifest_is_exit_4_with_nothing_kept() {
    let body = r#"{"resourceType":"Bundle","type":"searchset"}"#.to_string();
    let env =
        env_with(Faults { sync_kickoff: true, manifest_override: Some(body.clone()), ..Default::default() }).await;
    let err = env.run(&env.job(EXPORT)).await.unwrap_err();
    assert_eq!(err.exit_code(), 4);
    assert_eq!(
        err.to_string(),
        format!(
            "the server rejected the export: the server answered the kick-off with 200 and a body that is not a \
             completion manifest: {body}"
        )
    );
    assert!(!env.inflight().exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stu4_manifests_with_outcome_and_unknown_fields() {
    let env = env_with(Faults { manifest_stu4: true, ..Default::default() }).await;
    let out = env.run(&env.job(EXPORT)).await.expect("an STU4 manifest is read");
    assert_eq!(out.exit_code, 5, "the `outcome` file is the server's errors");
    let e = out.record.files.iter().find(|f| f.kind == FileKind::Error).unwrap();
    assert_eq!(
        (e.path.as_str(), e.resource_type.as_str(), e.lines),
        ("error/OperationOutcome.ndjson", "OperationOutcome", 1)
    );
    assert_eq!(out.record.files.len(), 4);
    for f in &out.record.files {
        assert_eq!(std::fs::read(out.run_dir.join(&f.path)).unwrap(), server_bytes(&env, &f.url).await, "{}", f.path);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_times_with_offsets_name_runs_in_utc() {
    for (offset, suffix) in [(0, "+00:00"), (-300, "-05:00")] {
        let env = env_with(Faults { transaction_time_offset: Some(offset), ..Default::default() }).await;
        let out = env.run(&env.job(EXPORT)).await.unwrap();
        let tt = &out.record.transaction_time;
        assert!(tt.ends_with(suffix), "the manifest's own string is kept: {tt}");
        let utc = time::OffsetDateTime::parse(tt, &time::format_description::well_known::Rfc3339)
            .unwrap()
            .to_offset(time::UtcOffset::UTC);
        let want = format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}.{:03}Z",
            utc.year(),
            u8::from(utc.month()),
            utc.day(),
            utc.hour(),
            utc.minute(),
            utc.second(),
            utc.millisecond()
        );
        assert_eq!(out.record.run_id, want);
        assert_eq!(out.run_dir.file_name().unwrap().to_str().unwrap(), want);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_formats_other_than_ndjson_are_refused_by_validate() {
    let env = Env::default().await;
    let yaml = env.yaml("t", &format!("{EXPORT}  output_format: text/csv\n"), "");
    let path = env.write_job("csv.yaml", &yaml);
    let o = run_bin(vec!["validate".into(), path.display().to_string()]).await;
    assert_eq!(o.status.code(), Some(2));
    let line = yaml.lines().position(|l| l.contains("output_format")).unwrap() + 1;
    let (file, pad) = (path.display(), " ".repeat(line.to_string().len()));
    let want = format!(
        "error: `text/csv` is not an output format oneup-bulk can read (files are checked as NDJSON)\n\
         {pad}--> {file}:{line}:18\n{pad} |\n{line} |   output_format: text/csv\n{pad} |                  ^\n\
         {pad} = help: allowed: application/fhir+ndjson, application/ndjson, ndjson, or leave it out for the \
         server's default\n"
    );
    assert!(String::from_utf8_lossy(&o.stderr).starts_with(&want), "{}", text(&o));
    for ok in ["application/fhir+ndjson", "application/ndjson", "ndjson"] {
        let path = env.write_job("ok.yaml", &env.yaml("t", &format!("{EXPORT}  output_format: {ok}\n"), ""));
        let o = run_bin(vec!["validate".into(), path.display().to_string()]).await;
        assert_eq!(o.status.code(), Some(0), "{ok}: {}", text(&o));
    }
    assert_eq!(env.sandbox.kickoff_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_forgets_a_synchronous_export_without_a_delete() {
    let env = Env::default().await;
    let path = env.write_job("j.yaml", &env.yaml("t", EXPORT, ""));
    let kickoff = format!("{}$export", env.sandbox.fhir_base());
    let mut s = oneup_bulk::state::InFlight::new(
        "e1".into(),
        &kickoff.parse().unwrap(),
        &kickoff.parse().unwrap(),
        "GET",
        None,
    );
    s.synchronous = true;
    let state = oneup_bulk::state::JobState::new(&env.out().join("t"));
    state.create().unwrap();
    state.save_inflight(&s).unwrap();
    let o = run_bin(vec!["cancel".into(), path.display().to_string()]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "t: a synchronous export has nothing to delete on the server; forgetting it here\n"
    );
    assert!(env.sandbox.requests().iter().all(|r| r.method != "DELETE"));
    assert!(!env.inflight().exists());
}
