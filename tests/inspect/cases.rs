//! Issue 13's cases on exports built by hand: a run folder that is not a finished run, a gzip stream
//! that breaks off, one file checked alone, a job folder, a checksum-only failure explained,
//! `deleted/`, and references that are not `Type/id`.

use std::path::Path;

use oneup_bulk::inspect::{Skipped, Status, inspect, render_problems};
use oneup_bulk::state::InFlight;

use crate::fixture::*;

/// `exports/t/<id>`: a run folder of job `t` (with `.state/` beside it), as `run_folder` makes it.
fn job_with_run(root: &Path, id: &str) -> std::path::PathBuf {
    let run = root.join("exports/t").join(id);
    run_folder(&run);
    std::fs::create_dir_all(root.join("exports/t/.state")).unwrap();
    std::fs::write(root.join("exports/t/.state/checkpoint.json"), "{}").unwrap();
    run
}

fn in_flight(root: &Path, run_id: &str) {
    let u = url::Url::parse("https://s/status/1").unwrap();
    let mut f = InFlight::new("e1".into(), &u, &u, "GET", None);
    f.run_id = Some(run_id.into());
    let p = root.join("exports/t/.state/inflight.json");
    std::fs::write(p, serde_json::to_vec(&f).unwrap()).unwrap();
}

#[test]
fn a_record_that_says_incomplete_is_reported_incomplete() {
    let d = tempfile::tempdir().unwrap();
    run_folder_with(d.path(), false, &["the manifest says 3, the file holds 2", "another"]);
    let r = inspect(&opts(d.path())).unwrap();
    assert!(r.inputs[0].checks.iter().all(|c| c.ok), "every file matches its record");
    assert_eq!(
        r.inputs[0].incomplete.as_deref(),
        Some(
            "run.json records this run as incomplete (Patient.ndjson: the manifest says 3, the file holds 2; 1 more \
             in run.json), so `latest` does not point here; the next `oneup-bulk run JOB.yaml` exports again from \
             the job's last complete run"
        )
    );
    assert!(!r.whole);
    assert_eq!(r.exit_code(), 1);
}

#[test]
fn no_run_json_and_no_export_in_flight_is_incomplete_though_the_counts_agree() {
    let d = tempfile::tempdir().unwrap();
    let run = job_with_run(d.path(), "20240501T000000Z");
    std::fs::remove_file(run.join("run.json")).unwrap();
    let r = inspect(&opts(&run)).unwrap();
    let i = &r.inputs[0];
    assert!(!i.checks.is_empty() && i.checks.iter().all(|c| c.ok), "{:?}", i.checks);
    let why = i.incomplete.as_deref().unwrap_or_default();
    assert!(why.starts_with("no run.json, and no export in flight for it: the run stopped"), "{why}");
    assert_eq!(r.exit_code(), 1);
    // With the job's export in flight naming it, a rerun finishes it.
    in_flight(d.path(), "20240501T000000Z");
    let r = inspect(&opts(&run)).unwrap();
    let why = r.inputs[0].incomplete.clone().unwrap_or_default();
    assert!(why.starts_with("no run.json: the run was interrupted and its export is still in flight"), "{why}");
    assert_eq!(r.exit_code(), 1);
    // An export in flight for another run says nothing about this one.
    in_flight(d.path(), "20240601T000000Z");
    let why = inspect(&opts(&run)).unwrap().inputs[0].incomplete.clone().unwrap_or_default();
    assert!(why.starts_with("no run.json, and no export in flight for it"), "{why}");
}

#[test]
fn unfinished_downloads_without_a_state_folder_are_incomplete() {
    let d = tempfile::tempdir().unwrap();
    run_folder(d.path());
    std::fs::remove_file(d.path().join("run.json")).unwrap();
    std::fs::write(d.path().join("Coverage.ndjson.part"), "{").unwrap();
    let r = inspect(&opts(d.path())).unwrap();
    let why = r.inputs[0].incomplete.as_deref().unwrap_or_default();
    assert!(why.starts_with("no run.json, and 1 download(s) not finished (*.part)"), "{why}");
    assert_eq!(r.exit_code(), 1);
    // Another tool's folder with only its manifest: nothing says it is unfinished.
    std::fs::remove_file(d.path().join("Coverage.ndjson.part")).unwrap();
    let r = inspect(&opts(d.path())).unwrap();
    assert_eq!(r.inputs[0].incomplete, None);
    assert_eq!(r.exit_code(), 0);
}

/// 300 patients, gzip, cut in the middle of the compressed stream (or damaged there).
fn broken_gzip(dir: &Path, damage: bool) {
    let body: String = (0..300).map(|i| format!("{{\"resourceType\":\"Patient\",\"id\":\"p{i}\"}}\n")).collect();
    let mut gz = gzip(body.as_bytes());
    let half = gz.len() / 2;
    if damage {
        gz[half..half + 8].copy_from_slice(&[0xff; 8]);
    } else {
        gz.truncate(half);
    }
    std::fs::write(dir.join("Patient.ndjson.gz"), gz).unwrap();
    std::fs::write(dir.join("Coverage.ndjson"), COVERAGE).unwrap();
}

#[test]
fn a_gzip_stream_that_breaks_off_is_a_problem_of_that_file() {
    for damage in [false, true] {
        let d = tempfile::tempdir().unwrap();
        broken_gzip(d.path(), damage);
        let r = inspect(&opts(d.path())).unwrap();
        let i = &r.inputs[0];
        let f = i.files.iter().find(|f| f.path == "Patient.ndjson.gz").unwrap();
        assert!(f.truncated, "damage {damage}");
        assert!(f.resources > 0 && f.resources < 300, "the lines before the break are counted: {}", f.resources);
        let p = i
            .problems
            .iter()
            .find(|p| p.reason.starts_with("the gzip"))
            .unwrap_or_else(|| panic!("{damage}: {:?}", i.problems));
        assert_eq!(p.file, "Patient.ndjson.gz");
        let want = if damage { "the gzip data is damaged (" } else { "the gzip stream ends early: nothing after" };
        assert!(p.reason.starts_with(want), "{}", p.reason);
        assert!(i.types.iter().any(|t| t.resource_type == "Coverage"), "the other files are still reported");
        assert_eq!(r.exit_code(), 1);
    }
}

#[test]
fn one_file_of_a_run_is_checked_against_its_own_entry_alone() {
    let d = tempfile::tempdir().unwrap();
    run_folder(d.path());
    std::fs::write(d.path().join("Coverage.ndjson"), "changed\n").unwrap();
    let r = inspect(&opts(&d.path().join("Patient.ndjson"))).unwrap();
    let checks: Vec<(&str, &str, bool)> =
        r.inputs[0].checks.iter().map(|c| (c.what.as_str(), c.file.as_str(), c.ok)).collect();
    assert_eq!(checks, [("count", "Patient.ndjson", true), ("sha256", "Patient.ndjson", true)]);
    assert_eq!((r.inputs[0].kind, r.exit_code()), ("file", 0));
    // Its own entry still counts: changed, it fails.
    std::fs::write(d.path().join("Patient.ndjson"), PATIENTS.replace("\"2\"", "\"3\"")).unwrap();
    assert_eq!(inspect(&opts(&d.path().join("Patient.ndjson"))).unwrap().exit_code(), 1);
    // A file in error/ is read as what it is, under its name in run.json.
    let r = inspect(&opts(&d.path().join("error/OperationOutcome.ndjson"))).unwrap();
    let i = &r.inputs[0];
    assert_eq!(i.files[0].path, "error/OperationOutcome.ndjson");
    assert_eq!((i.outcomes.len(), i.checks.len(), i.checks[0].ok), (1, 1, true));
    assert!(i.types.is_empty(), "the server's errors are not data");
    assert_eq!(r.exit_code(), 0);
}

#[test]
fn a_job_folder_lists_its_runs_and_checks_nothing() {
    let d = tempfile::tempdir().unwrap();
    job_with_run(d.path(), "20240501T000000Z");
    let b = job_with_run(d.path(), "20240601T000000Z");
    std::fs::remove_file(b.join("run.json")).unwrap();
    in_flight(d.path(), "20240601T000000Z");
    std::os::unix::fs::symlink("20240501T000000Z", d.path().join("exports/t/latest")).unwrap();
    let job = d.path().join("exports/t");
    let r = inspect(&opts(&job)).unwrap();
    let runs = r.inputs[0].runs.as_ref().unwrap();
    let got: Vec<_> = runs.iter().map(|r| (r.id.as_str(), r.status, r.latest, r.files, r.resources)).collect();
    assert_eq!(
        got,
        [
            ("20240501T000000Z", Status::Complete, true, Some(2), Some(4)),
            ("20240601T000000Z", Status::Interrupted, false, Some(0), Some(0)),
        ]
    );
    assert_eq!(runs[0].transaction_time.as_deref(), Some("2024-05-01T00:00:00Z"));
    assert!(!r.whole);
    assert_eq!(r.exit_code(), 2, "nothing was checked");
    // Beside a run, the listing does not change the verdict.
    let mut o = opts(&job);
    o.paths.push(job.join("latest"));
    assert_eq!(inspect(&o).unwrap().exit_code(), 0);
}

#[test]
fn invalid_explains_a_checksum_only_failure() {
    let d = tempfile::tempdir().unwrap();
    run_folder(d.path());
    let changed = PATIENTS.replace("\"2\"", "\"3\"");
    std::fs::write(d.path().join("Patient.ndjson"), &changed).unwrap();
    let r = inspect(&opts(d.path())).unwrap();
    let mut out = Vec::new();
    render_problems(&r, 20, &mut out).unwrap();
    let (found, recorded) = (&sha(changed.as_bytes())[..12], &sha(PATIENTS.as_bytes())[..12]);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!(
            "Patient.ndjson: every line is valid, but its SHA-256 {found}… is not the {recorded}… run.json records: \
             the bytes changed after they were downloaded and verified (edited, re-encoded or replaced), so they are \
             not what the server sent\n"
        )
    );
}

const DELETED: &str = concat!(
    r#"{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"DELETE","url":"Patient/7"}},{"request":{"method":"DELETE","url":"Observation/o1"}}]}"#,
    "\n",
    r#"{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"DELETE","url":"Patient/8"}}]}"#,
    "\n",
);

/// Patients and coverage whose references are a Bundle id, a contained resource and an absolute URL,
/// and two Bundles of deleted resources.
pub fn deleted_and_other_references(dir: &Path) {
    std::fs::create_dir_all(dir.join("deleted")).unwrap();
    std::fs::write(dir.join("Patient.ndjson"), PATIENTS).unwrap();
    let coverage = concat!(
        r#"{"resourceType":"Coverage","id":"c1","beneficiary":{"reference":"urn:uuid:0b5a6c1e-9f7d-4c3e-8a2b-1d0e9f8a7b6c"},"#,
        r##""payor":[{"reference":"#org"}],"contained":[{"resourceType":"Organization","id":"org"}]}"##,
        "\n",
        r#"{"resourceType":"Coverage","id":"c2","beneficiary":{"reference":"https://elsewhere.example/fhir/Patient/9"},"subscriber":{"reference":"Patient/1"}}"#,
        "\n",
    );
    std::fs::write(dir.join("Coverage.ndjson"), coverage).unwrap();
    std::fs::write(dir.join("deleted/Bundle.ndjson"), DELETED).unwrap();
}

#[test]
fn deleted_bundles_are_counted_apart_and_other_references_skipped() {
    let d = tempfile::tempdir().unwrap();
    deleted_and_other_references(d.path());
    let mut o = opts(d.path());
    o.check_references = true;
    let r = inspect(&o).unwrap();
    let i = &r.inputs[0];
    let types: Vec<(&str, u64)> = i.types.iter().map(|t| (t.resource_type.as_str(), t.resources)).collect();
    assert_eq!(types, [("Coverage", 2), ("Patient", 2)], "deleted entries are not data");
    let del = i.deleted.as_ref().unwrap();
    assert_eq!((del.files, del.bundles, del.entries), (1, 2, 3));
    let per: Vec<(&str, u64)> = del.types.iter().map(|t| (t.resource_type.as_str(), t.entries)).collect();
    assert_eq!(per, [("Observation", 1), ("Patient", 2)]);
    let refs = i.references.as_ref().unwrap();
    assert_eq!(refs.checked, 1);
    assert_eq!(refs.skipped, Skipped { urn: 1, contained: 1, absolute: 1, other: 0 });
    assert!(refs.dangling.is_empty() && refs.target_not_exported.is_empty());
    assert!(r.whole);
}
