//! Silent successes made visible (issue 18): a token granted less than the export asks for, an export
//! with no resources, a type asked for and absent from the manifest. Each is a warning in the log, the
//! summary and `run.json`; the exit code stays what the files say.

use oneup_bulk::record::Problem;
use oneup_bulk::sandbox::{Faults, SandboxConfig};

use crate::harness::*;

fn warning(message: &str) -> Problem {
    Problem { file: None, line: None, message: message.into() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_narrow_granted_scope_is_a_warning_in_the_log_the_summary_and_run_json() {
    let env = Env::new(SandboxConfig {
        error_file: false,
        faults: Faults { granted_scope: Some("system/Patient.read".into()), ..Default::default() },
        ..Default::default()
    })
    .await;
    let path = env.write_job("w.yaml", &env.yaml("t", "  level: system\n  types: [Patient, Coverage]\n", ""));
    let o = run_bin(vec!["run".into(), "--no-progress".into(), path.display().to_string()]).await;
    assert_eq!(o.status.code(), Some(0), "a warning does not change the exit code: {}", text(&o));
    let msg = "the token's granted scope `system/Patient.read` does not cover Coverage; the server may have left them out of the export";
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains(&format!("\n  warning: {msg}\n")), "the summary: {stdout}");
    let log: Vec<&str> = std::str::from_utf8(&o.stderr).unwrap().lines().filter(|l| l.contains(" WARN ")).collect();
    assert_eq!(log.len(), 1, "{log:?}");
    assert!(log[0].ends_with(msg), "{log:?}");
    let record = read_record(&env.out().join("t/latest"));
    assert_eq!(record.warnings, vec![warning(msg)]);
    assert!(record.complete);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_type_missing_from_the_manifest_and_an_empty_export() {
    let env = Env::new(SandboxConfig {
        faults: Faults { omit_output_type: Some("Coverage".into()), ..Default::default() },
        ..Default::default()
    })
    .await;
    let out = env.run(&env.job("  level: system\n  types: [Patient, Coverage]\n")).await.unwrap();
    assert_eq!(out.exit_code, 5, "unchanged: the sandbox's error[] file");
    assert_eq!(
        out.record.warnings,
        vec![warning("the manifest has no file for Coverage, asked for in export.types: the server exported none")]
    );
    assert_run_matches_server(&env, &out).await;

    env.sandbox.faults().clear();
    let job = env.job_from(&env.yaml("e", "  level: system\n  types: [Patient]\n  since: 2099-01-01\n", ""));
    let out = env.run(&job).await.unwrap();
    assert_eq!((out.exit_code, out.record.totals.resources), (5, 0));
    let since = out.record.since.clone().expect("_since was sent");
    assert_eq!(
        out.record.warnings,
        vec![warning(&format!(
            "the export holds no resources: nothing changed since {since} (_since), or the server found nothing to export"
        ))]
    );
}
