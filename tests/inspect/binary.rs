//! Through the binary: `--head` with and without `--type`, lines as they are in the files or
//! `--pretty`, a misspelt `--type`, and a stdout closed early (`| head -1`) ending quietly.

use std::io::Read;
use std::path::Path;
use std::process::Stdio;

use crate::fixture::*;

fn run(args: &[&str], path: &Path) -> std::process::Output {
    bin().arg("inspect").args(args).arg(path).output().unwrap()
}

#[test]
fn head_without_a_type_prints_the_first_lines_of_each_type_as_they_are() {
    let d = tempfile::tempdir().unwrap();
    run_folder(d.path());
    let o = run(&["--head", "1"], d.path());
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let first = |s: &str| s.lines().next().unwrap().to_string();
    // The files in order (Coverage, Patient); the server's errors are not data.
    assert_eq!(String::from_utf8(o.stdout).unwrap(), format!("{}\n{}\n", first(COVERAGE), first(PATIENTS)));
    let o = run(&["--head", "5", "--type", "Patient"], d.path());
    assert_eq!(String::from_utf8(o.stdout).unwrap(), PATIENTS, "N of that type at most, as in the file");
    let o = run(&["--type", "OperationOutcome"], d.path());
    assert_eq!(String::from_utf8(o.stdout).unwrap(), format!("{}\n", first(ERRORS)), "--type alone: one");
    let o = run(&["--head", "1", "--type", "Patient", "--pretty"], d.path());
    let want = "{\n  \"resourceType\": \"Patient\",\n  \"id\": \"1\",\n  \"meta\": {\n    \"lastUpdated\": \
                \"2024-01-02T00:00:00Z\"\n  }\n}\n";
    assert_eq!(String::from_utf8(o.stdout).unwrap(), want);
}

#[test]
fn a_misspelt_type_is_a_usage_error_with_the_nearest_name() {
    let d = tempfile::tempdir().unwrap();
    run_folder(d.path());
    let o = run(&["--type", "Patinet", "--head", "2"], d.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stdout.is_empty());
    snap!("type_misspelt_stderr", String::from_utf8(o.stderr).unwrap());
    let o = run(&["--type", "Practitioner"], d.path());
    assert_eq!(o.status.code(), Some(2));
    snap!("type_not_here_stderr", String::from_utf8(o.stderr).unwrap());
}

/// Spawns `inspect args path`, reads one line of its stdout, closes it, and returns the exit code
/// and stderr.
fn close_after_one_line(args: &[&str], path: &Path) -> (Option<i32>, String) {
    let mut child =
        bin().arg("inspect").args(args).arg(path).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut byte = [0u8; 1];
    while stdout.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {}
    drop(stdout);
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    (child.wait().unwrap().code(), err)
}

#[test]
fn a_closed_stdout_ends_quietly() {
    let d = tempfile::tempdir().unwrap();
    // Far more than a pipe holds: 20 000 patients (~1 MB), and reports listing 5 000 problems.
    let many: String = (0..20_000).map(|i| format!("{{\"resourceType\":\"Patient\",\"id\":\"p{i}\"}}\n")).collect();
    std::fs::write(d.path().join("Patient.ndjson"), many).unwrap();
    let (code, err) = close_after_one_line(&["--head", "20000"], d.path());
    assert_eq!((code, err.as_str()), (Some(0), ""));
    let bad = tempfile::tempdir().unwrap();
    for n in 0..50 {
        std::fs::write(bad.path().join(format!("Patient.{n:04}.ndjson")), "x\n".repeat(100)).unwrap();
    }
    let (code, err) = close_after_one_line(&["--json"], bad.path());
    assert_eq!((code, err.as_str()), (Some(1), ""), "quiet, and the exit code is still the verdict");
    let (code, err) = close_after_one_line(&["--invalid", "100000"], bad.path());
    assert_eq!((code, err.as_str()), (Some(1), ""));
}
