//! Payer-to-Payer both ways (issue 14), through the binary against the sandbox playing 1up: HRex
//! `$member-match` one member at a time (matched, not matched, consent refused; each answer kept;
//! the matched members exported server-scoped or by `patient` parameters), PDex `$bulk-member-match` in
//! both result forms (one Parameters resource, PDex 2.2's Group NDJSON files), and the shipped job.

use std::path::Path;

use oneup_bulk::sandbox::{OneUpMode, SandboxConfig};
use serde_json::{Value, json};

use super::oneup::{gateway, oneup_job};
use crate::harness::*;

const TYPES: &str = "  types: [Patient, Coverage]\n";

/// One MemberBundle. `by_subscriber`: matched by the old coverage's subscriber id, not by name.
fn member(n: u32, given: &str, family: &str, birth: &str, subscriber: Option<&str>, consent: &str) -> Value {
    let mut coverage = json!({"resourceType": "Coverage", "status": "active"});
    if let Some(s) = subscriber {
        coverage["subscriberId"] = json!(s);
    }
    json!({"name": "MemberBundle", "part": [
        {"name": "MemberPatient", "resource": {"resourceType": "Patient", "id": format!("member-{n}"),
            "identifier": [{"value": format!("X-{n}")}], "name": [{"family": family, "given": [given]}], "birthDate": birth}},
        {"name": "CoverageToMatch", "resource": coverage},
        {"name": "Consent", "resource": {"resourceType": "Consent", "status": "active", "provision": {"type": consent}}}
    ]})
}

/// Four members: pt-1 by name, pt-2 by subscriber id, nobody, and pt-3 whose Consent denies.
fn members_file(env: &Env) -> std::path::PathBuf {
    let d = |i| env.sandbox.data().demographics(i);
    let (d1, d2, d3) = (d(1), d(2), d(3));
    let params = json!({"resourceType": "Parameters", "parameter": [
        member(1, d1.given, d1.family, &d1.birth_date, None, "permit"),
        member(2, "Nobody", "Known", &d2.birth_date, Some(&d2.member_id), "permit"),
        member(3, "Nobody", "Unknown", "1900-01-01", None, "permit"),
        member(4, d3.given, d3.family, &d3.birth_date, Some(&d3.member_id), "deny"),
    ]});
    let p = env.dir.path().join("members.json");
    std::fs::write(&p, params.to_string()).unwrap();
    p
}

fn top(env: &Env) -> String {
    format!("oneup:\n  tenant: bison\n  realm: dev-portal\n  gateway: {}\n", gateway(env))
}

fn run_json(out: &Path) -> Value {
    let latest = out.join("t/latest/run.json");
    serde_json::from_slice(&std::fs::read(latest).unwrap()).unwrap()
}

fn patient_ids(out: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(out.join("t/latest/Patient.ndjson")).unwrap();
    text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["id"].as_str().unwrap().to_string()).collect()
}

/// The summary's member-match lines.
fn match_lines(o: &std::process::Output) -> String {
    let out = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = out.lines().filter(|l| l.starts_with("  member match") || l.starts_with("    ")).collect();
    lines.join("\n")
}

async fn run_job_file(env: &Env, yaml: &str) -> std::process::Output {
    let path = env.write_job("p.yaml", yaml);
    run_bin(vec!["run".into(), "--no-progress".into(), path.display().to_string()]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_match_one_by_one_then_a_scoped_get_export() {
    let env = Env::new(SandboxConfig { oneup: OneUpMode::all(), error_file: false, ..Default::default() }).await;
    members_file(&env);
    let mm = "member_match:\n  parameters_file: members.json\n  operation: member-match\n  concurrency: 2\n";
    let o =
        run_job_file(&env, &oneup_job(&env, "payer-to-payer", &top(&env), "", &format!("{mm}export:\n{TYPES}"))).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let not_found = "HTTP 422: No match found: no single member has these demographics and coverage";
    let refused = "HTTP 422: The member was found, but the Consent request cannot be complied with";
    let d2 = env.sandbox.data().demographics(2).member_id;
    let d3 = env.sandbox.data().demographics(3).member_id;
    assert_eq!(
        match_lines(&o),
        format!(
            "  member match ($member-match): 2 of 4 matched, 1 not matched, 1 consent refused; answers in member-match\n    not matched: member-3 (X-3): {not_found}\n    consent refused: member-4 ({d3}): {refused}"
        )
    );
    let id = |i: u32| format!("http://example.org/fhir/sid/member-id|{}", env.sandbox.data().demographics(i).member_id);
    assert_eq!(
        run_json(&env.out())["member_match"],
        json!({
            "operation": "member-match", "members": 4,
            "matched": [
                {"member": "member-1 (X-1)", "patient": "Patient/pt-1", "identifier": id(1)},
                {"member": format!("member-2 ({d2})"), "patient": "Patient/pt-2", "identifier": id(2)}],
            "not_matched": [{"member": "member-3 (X-3)", "reason": not_found}],
            "consent_refused": [{"member": format!("member-4 ({d3})"), "reason": refused}],
            "files": ["member-match/001.json", "member-match/002.json", "member-match/003.json", "member-match/004.json"]
        })
    );
    // Each answer as the server sent it, owner-only.
    let run = env.out().join("t/latest");
    let first: Value = serde_json::from_slice(&std::fs::read(run.join("member-match/001.json")).unwrap()).unwrap();
    assert_eq!(first["parameter"][1]["valueReference"]["reference"], "Patient/pt-1");
    assert_eq!(mode(&run.join("member-match/004.json")), 0o600);
    assert_eq!(mode(&run.join("member-match")), 0o700);
    // One $member-match per member, then one GET export that 1up (here: the sandbox) scopes to them.
    let reqs = env.sandbox.requests();
    let asks = reqs.iter().filter(|r| r.path == "/v1/bison/bulk-export/bulk-data/r4/Patient/$member-match").count();
    assert_eq!(asks, 4);
    let kick = reqs.iter().find(|r| r.path.contains("$export?")).unwrap();
    assert_eq!(
        (kick.method.as_str(), kick.path.as_str()),
        ("GET", "/v1/bison/bulk-export/bulk-data/r4/$export?_type=Patient%2CCoverage")
    );
    assert_eq!(patient_ids(&env.out()), ["pt-1", "pt-2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matched_members_as_patient_parameters_when_post_is_allowed() {
    // No scoping here: only the `patient` parameters can limit the export to the matched members.
    let env = Env::new(SandboxConfig { error_file: false, ..Default::default() }).await;
    members_file(&env);
    let mm = "member_match:\n  parameters_file: members.json\n  operation: member-match\n  matched_export: patients\n";
    let yaml = oneup_job(&env, "payer-to-payer", &top(&env), "", &format!("{mm}export:\n{TYPES}  method: post\n"));
    let o = run_job_file(&env, &yaml).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let k = env.sandbox.kickoffs();
    assert_eq!((k.len(), k[0].method.as_str()), (1, "POST"));
    assert_eq!(k[0].url, format!("{}/v1/bison/bulk-export/bulk-data/r4/Patient/$export", gateway(&env)));
    assert_eq!(k[0].params.patients, ["Patient/pt-1", "Patient/pt-2"]);
    assert_eq!(patient_ids(&env.out()), ["pt-1", "pt-2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_member_match_in_both_result_forms() {
    for pdex_2_2 in [false, true] {
        let oneup = OneUpMode { get_only: true, bulk_match_as_group_files: pdex_2_2, ..Default::default() };
        let env = Env::new(SandboxConfig { oneup, error_file: false, ..Default::default() }).await;
        members_file(&env);
        let yaml = oneup_job(
            &env,
            "payer-to-payer",
            &top(&env),
            "",
            &format!("member_match:\n  parameters_file: members.json\nexport:\n{TYPES}"),
        );
        let o = run_job_file(&env, &yaml).await;
        assert_eq!(o.status.code(), Some(0), "PDex 2.2 form: {pdex_2_2}: {}", text(&o));
        let mut rec = run_json(&env.out())["member_match"].clone();
        let group = rec["group_id"].as_str().unwrap().to_string();
        assert!(group.starts_with("mm-") && group.ends_with("-matched"), "{group}");
        rec["group_id"] = json!("G");
        let files = match pdex_2_2 {
            false => json!(["member-match.json"]),
            true => json!([
                "member-match.json",
                "member-match/result.001.ndjson",
                "member-match/result.002.ndjson",
                "member-match/result.003.ndjson"
            ]),
        };
        assert_eq!(
            rec,
            json!({
                "operation": "bulk-member-match", "members": 4,
                "matched": [
                    {"member": "Patient/pt-1", "patient": "Patient/pt-1", "identifier": null},
                    {"member": "Patient/pt-2", "patient": "Patient/pt-2", "identifier": null}],
                "not_matched": [{"member": "X-3", "reason": null}],
                "consent_refused": [{"member": "Patient/pt-3", "reason": null}],
                "group_id": "G", "group_size": 2, "files": files
            }),
            "PDex 2.2 form: {pdex_2_2}"
        );
        let run = env.out().join("t/latest");
        let kept: Value = serde_json::from_slice(&std::fs::read(run.join("member-match.json")).unwrap()).unwrap();
        assert_eq!(kept.get("output").is_some(), pdex_2_2, "the answer is kept as received");
        // The matched group, exported with a GET (1up's rule), not PDex's POST $davinci-data-export.
        let k = env.sandbox.kickoffs();
        assert_eq!((k[0].method.as_str(), k[0].operation.as_str()), ("GET", "$export"));
        assert!(k[0].url.contains(&format!("/Group/{group}/$export")), "{}", k[0].url);
        assert_eq!(patient_ids(&env.out()), ["pt-1", "pt-2"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_payer_to_payer_job_runs_against_the_sandbox() {
    let env = Env::new(SandboxConfig {
        oneup: OneUpMode::all(),
        error_file: false,
        polls_before_ready: 0,
        ..Default::default()
    })
    .await;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs");
    // Only the URLs change: the sandbox is the gateway (and --out replaces download.dir).
    let yaml = std::fs::read_to_string(root.join("payer-to-payer.yaml")).unwrap();
    let realm = yaml.lines().find(|l| l.trim_start().starts_with("realm:")).unwrap();
    let yaml = yaml.replacen(realm, &format!("{realm}\n  gateway: {}", gateway(&env)), 1);
    let job = env.write_job("payer-to-payer.yaml", &yaml);
    std::fs::copy(root.join("payer-to-payer-members.json"), env.dir.path().join("payer-to-payer-members.json"))
        .unwrap();
    let (job, out) = (job.display().to_string(), env.out().display().to_string());
    let o = tokio::task::spawn_blocking(move || {
        bin()
            .env("ONEUP_CLIENT_ID", CLIENT_ID)
            .env("ONEUP_CLIENT_SECRET", SECRET)
            .args(["run", "--no-progress", "--out", &out, &job])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        match_lines(&o),
        "  member match ($member-match): 2 of 3 matched, 1 not matched, 0 consent refused; answers in member-match\n    not matched: member-3 (M100003): HTTP 422: No match found: no single member has these demographics and coverage"
    );
    let ids = std::fs::read_to_string(env.out().join("payer-to-payer/latest/Patient.ndjson")).unwrap();
    assert_eq!(ids.lines().count(), 2);
}

/// The shipped Provider Access job, with only a `gateway:` line added, runs against the sandbox playing
/// 1up: the types the sandbox has no data for export nothing, and the run says which.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_provider_job_runs_against_the_sandbox() {
    let env = Env::new(SandboxConfig {
        oneup: OneUpMode::all(),
        error_file: false,
        polls_before_ready: 0,
        ..Default::default()
    })
    .await;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs");
    let yaml = std::fs::read_to_string(root.join("provider.yaml")).unwrap();
    let realm = yaml.lines().find(|l| l.trim_start().starts_with("realm:")).unwrap();
    let yaml = yaml.replacen(realm, &format!("{realm}\n  gateway: {}", gateway(&env)), 1);
    let job = env.write_job("provider.yaml", &yaml);
    let (job, out) = (job.display().to_string(), env.out().display().to_string());
    let o = tokio::task::spawn_blocking(move || {
        bin()
            .env("ONEUP_CLIENT_ID", CLIENT_ID)
            .env("ONEUP_CLIENT_SECRET", SECRET)
            .args(["run", "--no-progress", "--out", &out, &job])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    let warning = stdout.lines().find(|l| l.trim_start().starts_with("warning:")).unwrap_or_default();
    assert_eq!(
        warning,
        "  warning: the manifest has no file for Procedure, MedicationRequest, AllergyIntolerance, Immunization, asked for in export.types: the server exported none"
    );
    let kickoff = env.sandbox.requests().into_iter().find(|r| r.path.contains("$export?")).unwrap();
    assert_eq!(kickoff.method, "GET", "1up's population exports are GET-only");
    assert!(
        kickoff.path.starts_with("/v1/bison/bulk-export/bulk-data/r4/Group/attributed-members/$export?"),
        "{}",
        kickoff.path
    );
}
