//! The checks `inspect` started with (issue 6): a clean run, truncation, bad lines, count and checksum
//! mismatches, gzip, another tool's folder, dangling references, `--json`, exit codes.

use oneup_bulk::inspect::{inspect, render_json};

use crate::fixture::*;

#[test]
fn a_clean_run_is_whole_and_reported_by_type() {
    let d = tempfile::tempdir().unwrap();
    run_folder(d.path());
    let r = inspect(&opts(d.path())).unwrap();
    assert!(r.whole, "{r:#?}");
    assert_eq!(r.exit_code(), 0);
    let i = &r.inputs[0];
    assert_eq!(i.kind, "run");
    let p = i.types.iter().find(|t| t.resource_type == "Patient").unwrap();
    assert_eq!((p.files, p.resources, p.invalid_lines), (1, 2, 0));
    assert_eq!(p.earliest_last_updated.as_deref(), Some("2024-01-02T00:00:00Z"));
    assert_eq!(p.latest_last_updated.as_deref(), Some("2024-03-04T00:00:00Z"));
    assert!(i.checks.iter().all(|c| c.ok) && i.checks.iter().any(|c| c.what == "sha256"));
    assert_eq!(i.outcomes.len(), 1);
    assert_eq!((i.outcomes[0].code.as_str(), i.outcomes[0].count), ("not-found", 2));
}

#[test]
fn truncated_file() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("Patient.ndjson"), &PATIENTS[..PATIENTS.len() - 20]).unwrap();
    let r = inspect(&opts(d.path())).unwrap();
    assert!(r.inputs[0].files[0].truncated);
    assert_eq!(r.exit_code(), 1);
}

#[test]
fn bad_json_and_wrong_resource_type_with_their_lines() {
    let d = tempfile::tempdir().unwrap();
    let body = format!("{PATIENTS}not json\n{}\n", r#"{"resourceType":"Coverage","id":"x"}"#);
    std::fs::write(d.path().join("Patient.ndjson"), body).unwrap();
    let r = inspect(&opts(d.path())).unwrap();
    let f = &r.inputs[0].files[0];
    assert_eq!((f.resources, f.invalid_lines, f.wrong_type_lines), (4, 1, 1));
    let problems: Vec<(u64, &str)> = r.inputs[0].problems.iter().map(|p| (p.line, p.reason.as_str())).collect();
    assert_eq!(problems[0].0, 3);
    assert!(problems[0].1.starts_with("not JSON"), "{problems:?}");
    assert_eq!(problems[1], (4, r#"resourceType is "Coverage", expected "Patient""#));
    assert_eq!(r.exit_code(), 1);
}

#[test]
fn count_mismatch_against_the_manifest() {
    let d = tempfile::tempdir().unwrap();
    run_folder(d.path());
    std::fs::remove_file(d.path().join("run.json")).unwrap();
    std::fs::write(d.path().join("Patient.ndjson"), PATIENTS.lines().next().unwrap()).unwrap();
    let r = inspect(&opts(d.path())).unwrap();
    let c = r.inputs[0].checks.iter().find(|c| c.file == "Patient").unwrap();
    assert_eq!((c.expected.as_str(), c.found.as_str(), c.ok), ("2", "1", false));
    assert_eq!(r.exit_code(), 1);
}

#[test]
fn checksum_mismatch_against_run_json() {
    let d = tempfile::tempdir().unwrap();
    run_folder(d.path());
    std::fs::write(d.path().join("Patient.ndjson"), PATIENTS.replace("\"2\"", "\"3\"")).unwrap();
    let r = inspect(&opts(d.path())).unwrap();
    let c = r.inputs[0].checks.iter().find(|c| c.what == "sha256" && c.file == "Patient.ndjson").unwrap();
    assert!(!c.ok);
    assert_eq!(r.exit_code(), 1);
}

#[test]
fn gzip_files_and_another_tools_folder() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("1.Patient.ndjson.gz"), gzip(PATIENTS.as_bytes())).unwrap();
    std::fs::write(d.path().join("2.Coverage.ndjson"), COVERAGE).unwrap();
    let r = inspect(&opts(d.path())).unwrap();
    let i = &r.inputs[0];
    assert_eq!(i.kind, "folder");
    let types: Vec<(&str, u64)> = i.types.iter().map(|t| (t.resource_type.as_str(), t.resources)).collect();
    assert_eq!(types, [("Coverage", 2), ("Patient", 2)]);
    assert!(i.checks.is_empty(), "no record to compare with");
    assert!(r.whole);
}

#[test]
fn dangling_references_are_found_and_counted() {
    let d = tempfile::tempdir().unwrap();
    run_folder(d.path());
    let mut o = opts(d.path());
    o.check_references = true;
    let r = inspect(&o).unwrap();
    let refs = r.inputs[0].references.as_ref().unwrap();
    assert_eq!(refs.resources_indexed, 4);
    assert_eq!(refs.checked, 3);
    assert_eq!(refs.dangling.len(), 1);
    assert_eq!(
        (refs.dangling[0].source_type.as_str(), refs.dangling[0].field.as_str(), refs.dangling[0].count),
        ("Coverage", "beneficiary", 1)
    );
    assert_eq!(refs.dangling[0].examples, ["Patient/404"]);
    assert_eq!(refs.target_not_exported[0].target_type, "Organization");
    assert_eq!(r.exit_code(), 1, "dangling references make the export not whole");
}

#[test]
fn json_report_field_by_field() {
    let d = tempfile::tempdir().unwrap();
    run_folder(d.path());
    let r = inspect(&opts(d.path())).unwrap();
    let mut buf = Vec::new();
    render_json(&r, &mut buf).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
    assert_eq!(v["whole"], true);
    assert!(v["seconds"].is_number() && v["bytes"].as_u64().unwrap() > 0);
    let i = &v["inputs"][0];
    assert_eq!(i["kind"], "run");
    let t = i["types"].as_array().unwrap().iter().find(|t| t["type"] == "Coverage").unwrap();
    for (k, want) in [("files", 1), ("resources", 2), ("invalid_lines", 0), ("wrong_type_lines", 0)] {
        assert_eq!(t[k], want, "{k}");
    }
    assert_eq!(t["bytes"], COVERAGE.len());
    let f = i["files"].as_array().unwrap().iter().find(|f| f["path"] == "Coverage.ndjson").unwrap();
    assert_eq!(f["sha256"], sha(COVERAGE.as_bytes()));
    assert_eq!(f["truncated"], false);
    assert_eq!(i["outcomes"][0]["severity"], "error");
    assert_eq!(i["outcomes"][0]["diagnostics"], "gone");
    assert!(i["checks"].as_array().unwrap().iter().all(|c| c["ok"] == true));
    assert!(i["references"].is_null());
}

#[test]
fn exit_codes_of_the_command() {
    let bin = env!("CARGO_BIN_EXE_oneup-bulk");
    let d = tempfile::tempdir().unwrap();
    run_folder(d.path());
    let ok = std::process::Command::new(bin).arg("inspect").arg(d.path()).output().unwrap();
    assert_eq!(ok.status.code(), Some(0), "{}", String::from_utf8_lossy(&ok.stdout));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("whole and valid"));
    std::fs::write(d.path().join("Patient.ndjson"), "garbage\n").unwrap();
    let bad = std::process::Command::new(bin).args(["inspect", "--invalid", "5"]).arg(d.path()).output().unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&bad.stdout).contains("Patient.ndjson:1: not JSON"),
        "{}",
        String::from_utf8_lossy(&bad.stdout)
    );
    let usage = std::process::Command::new(bin).args(["inspect", "/nonexistent/path"]).output().unwrap();
    assert_eq!(usage.status.code(), Some(2));
    let head = std::process::Command::new(bin)
        .args(["inspect", "--type", "Coverage", "--head", "1"])
        .arg(d.path())
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&head.stdout).unwrap();
    assert_eq!(v["id"], "c1");
}
