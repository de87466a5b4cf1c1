//! The happy paths and the token rules (issue 3): levels, GET and POST kick-offs, PDex, renewal,
//! Retry-After forms, signed-URL storage, redirects, refused secrets and kick-offs.

use std::time::Duration;

use oneup_bulk::record::FileKind;
use oneup_bulk::sandbox::{Faults, Listener, RetryAfterStyle, SandboxConfig};

use crate::harness::*;

const TYPES: &str = "  types: [Patient, Coverage, ExplanationOfBenefit]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_export_downloads_verified_files() {
    let env = Env::default().await;
    let job = env.job(&format!("  level: system\n{TYPES}"));
    let out = env.run(&job).await.expect("run completes");
    assert_eq!(out.exit_code, 5, "the sandbox reports an error[] file, as real servers do");
    assert!(out.record.complete);
    let types: Vec<&str> =
        out.record.files.iter().filter(|f| f.kind == FileKind::Output).map(|f| f.resource_type.as_str()).collect();
    assert_eq!(types, ["Patient", "Coverage", "ExplanationOfBenefit"]);
    assert!(out.record.totals.resources > 0);
    assert!(out.record.files.iter().any(|f| f.kind == FileKind::Error && f.path == "error/OperationOutcome.ndjson"));
    assert_run_matches_server(&env, &out).await;
    // run.json is the record; latest points at the run.
    let run: serde_json::Value = serde_json::from_slice(&std::fs::read(out.run_dir.join("run.json")).unwrap()).unwrap();
    assert_eq!(run["transactionTime"], out.record.transaction_time);
    let latest = std::fs::read_link(env.out().join("t/latest")).unwrap();
    assert_eq!(latest, std::path::PathBuf::from(&out.record.run_id));
    // The kick-off was a GET with the joined _type list and the required headers.
    let k = env.sandbox.requests().into_iter().find(|r| r.path.contains("$export?")).expect("GET kick-off");
    assert_eq!(k.method, "GET");
    assert!(k.path.contains("_type=Patient%2CCoverage%2CExplanationOfBenefit"), "{}", k.path);
    assert_eq!(k.header("prefer"), Some("respond-async"));
    assert_eq!(k.header("accept"), Some("application/fhir+json"));
    assert!(k.authorization().unwrap().starts_with("Bearer "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patient_and_group_exports() {
    let env = Env::default().await;
    let out = env.run(&env.job(&format!("  level: patient\n{TYPES}"))).await.unwrap();
    assert_run_matches_server(&env, &out).await;
    let job = env.job_from(&env.yaml("g", &format!("  level: group\n  group_id: attributed-members\n{TYPES}"), ""));
    let out = env.run(&job).await.unwrap();
    assert!(out.record.totals.resources > 0);
    let paths: Vec<String> = env.sandbox.requests().iter().map(|r| r.path.clone()).collect();
    assert!(paths.iter().any(|p| p.starts_with("/fhir/Patient/$export")), "{paths:?}");
    assert!(paths.iter().any(|p| p.starts_with("/fhir/Group/attributed-members/$export")), "{paths:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_kickoff_with_parameters() {
    let env = Env::default().await;
    let job = env.job(&format!(
        "  level: patient\n  method: post\n{TYPES}  since: 2020-01-01T00:00:00Z\n  patients: [Patient/pt-1]\n"
    ));
    env.run(&job).await.unwrap();
    let k = env
        .sandbox
        .requests()
        .into_iter()
        .find(|r| r.path.contains("$export") && r.method == "POST")
        .expect("POST kick-off");
    let body: serde_json::Value = serde_json::from_slice(&k.body).unwrap();
    assert_eq!(body["resourceType"], "Parameters");
    let params = body["parameter"].as_array().unwrap();
    let find = |n: &str| params.iter().find(|p| p["name"] == n).cloned().unwrap_or_default();
    assert_eq!(find("_type")["valueString"], "Patient,Coverage,ExplanationOfBenefit");
    assert_eq!(find("_since")["valueInstant"], "2020-01-01T00:00:00Z");
    assert_eq!(find("patient")["valueReference"]["reference"], "Patient/pt-1");
    assert_eq!(k.header("content-type"), Some("application/fhir+json"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn davinci_data_export_posts_export_type() {
    let env = Env::default().await;
    let job = env.job(&format!(
        "  level: group\n  group_id: attributed-members\n  operation: davinci-data-export\n  export_type: provider-delta\n{TYPES}"
    ));
    let out = env.run(&job).await.unwrap();
    assert!(out.record.totals.resources > 0);
    let k = env.sandbox.kickoffs();
    assert_eq!(k.len(), 1);
    let req = env.sandbox.requests().into_iter().find(|r| r.path.contains("$davinci-data-export")).unwrap();
    assert_eq!(req.method, "POST");
    let body = String::from_utf8_lossy(&req.body).to_string();
    assert!(body.contains("hl7.fhir.us.davinci-pdex#provider-delta"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_is_renewed_when_it_expires_mid_export() {
    let env = Env::new(SandboxConfig {
        token_ttl: Duration::from_secs(1),
        polls_before_ready: 30,
        retry_after: RetryAfterStyle::None,
        ..Default::default()
    })
    .await;
    let yaml =
        env.yaml("t", &format!("  level: system\n{TYPES}"), "").replace("max_interval: 50ms", "max_interval: 100ms");
    let out = env.run(&env.job_from(&yaml)).await.unwrap();
    assert!(out.record.totals.resources > 0);
    let token_requests = env.sandbox.requests().iter().filter(|r| r.path == "/auth/token").count();
    assert!(token_requests >= 2, "expected renewals, saw {token_requests} token requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_in_seconds_and_http_date_forms() {
    for style in [RetryAfterStyle::Seconds(0), RetryAfterStyle::HttpDate(0), RetryAfterStyle::Seconds(3600)] {
        let env = Env::new(SandboxConfig { retry_after: style, polls_before_ready: 3, ..Default::default() }).await;
        let out = env.run(&env.job(&format!("  level: system\n{TYPES}"))).await.unwrap();
        assert!(out.record.totals.resources > 0, "{style:?}");
        let polls = env.sandbox.requests().iter().filter(|r| r.path.contains("$export-status")).count();
        assert_eq!(polls, 4, "{style:?}: three 202s then the manifest");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_storage_urls_get_no_token() {
    let env = Env::new(SandboxConfig { requires_access_token: false, ..Default::default() }).await;
    let out = env.run(&env.job(&format!("  level: system\n{TYPES}"))).await.unwrap();
    assert!(out.record.totals.resources > 0);
    for r in env.sandbox.requests().iter().filter(|r| r.path.starts_with("/files/")) {
        assert_eq!(r.authorization(), None, "{} carried a token", r.path);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_to_another_origin_does_not_carry_the_token() {
    let env = Env::new(SandboxConfig {
        faults: Faults { redirect_files_to_other_origin: true, ..Default::default() },
        ..Default::default()
    })
    .await;
    let out = env.run(&env.job(&format!("  level: system\n{TYPES}"))).await.unwrap();
    assert!(out.record.totals.resources > 0);
    let reqs = env.sandbox.requests();
    let storage: Vec<_> = reqs.iter().filter(|r| r.listener == Listener::Storage).collect();
    assert!(!storage.is_empty(), "the files were served from the other origin");
    for r in storage {
        assert_eq!(r.authorization(), None, "{} carried the token across origins", r.path);
    }
    // The first hop, on the FHIR server's origin, did carry it (requiresAccessToken is true).
    assert!(
        reqs.iter()
            .any(|r| r.listener == Listener::Main && r.path.starts_with("/files/") && r.authorization().is_some())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_is_exit_3_and_never_printed() {
    let env = Env::default().await;
    let yaml = env.yaml("t", &format!("  level: system\n{TYPES}"), "");
    let path = env.write_job("wrong.yaml", &yaml);
    let mut cmd = bin();
    cmd.env("TEST_SECRET", "wrong-secret-value").arg("run").arg(&path);
    let o = tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap();
    let t = text(&o);
    assert_eq!(o.status.code(), Some(3), "{t}");
    assert!(t.contains("invalid_client"), "{t}");
    assert!(!t.contains("wrong-secret-value"), "{t}");
    assert_eq!(env.sandbox.kickoff_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kickoff_operation_outcome_is_exit_4_with_its_diagnostics() {
    let env = Env::new(SandboxConfig {
        faults: Faults {
            kickoff_error: Some((400, "The _typeFilter parameter is not supported".into())),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let path = env.write_job("k.yaml", &env.yaml("t", &format!("  level: system\n{TYPES}"), ""));
    let o = run_bin(vec!["run".into(), path.display().to_string()]).await;
    let t = text(&o);
    assert_eq!(o.status.code(), Some(4), "{t}");
    assert!(t.contains("The _typeFilter parameter is not supported"), "{t}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payer_to_payer_member_match_then_export_of_the_matched_group() {
    let env = Env::default().await;
    let d = env.sandbox.data().demographics(3);
    let member = |given: &str, family: &str, birth: &str| {
        serde_json::json!({"name": "MemberBundle", "part": [
            {"name": "MemberPatient", "resource": {"resourceType": "Patient", "name": [{"family": family, "given": [given]}], "birthDate": birth}},
            {"name": "CoverageToMatch", "resource": {"resourceType": "Coverage", "status": "active"}},
            {"name": "Consent", "resource": {"resourceType": "Consent", "status": "active", "provision": {"type": "permit"}}}
        ]})
    };
    let params = serde_json::json!({"resourceType": "Parameters", "parameter": [
        member(d.given, d.family, &d.birth_date),
        member("Nobody", "Unknown", "1900-01-01"),
    ]});
    std::fs::write(env.dir.path().join("members.json"), params.to_string()).unwrap();
    let yaml = env
        .yaml(
            "p2p",
            // PDex's way: a POST, which payer-to-payer (1up's GET-only rule) sends only when asked.
            "  types: [Patient, Coverage]\n  operation: davinci-data-export\n  method: post\n",
            "member_match:\n  parameters_file: members.json\n",
        )
        .replace("access: bulk-data", "access: payer-to-payer");
    let out = env.run(&env.job_from(&yaml)).await.unwrap_or_else(|e| panic!("{e}"));
    let patients = out.record.files.iter().find(|f| f.resource_type == "Patient").unwrap();
    assert_eq!(patients.lines, 1, "only the matched member's data");
    let result: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.run_dir.join("member-match.json")).unwrap()).unwrap();
    assert_eq!(result["resourceType"], "Parameters");
    let reqs = env.sandbox.requests();
    let mm = reqs.iter().find(|r| r.path.contains("$bulk-member-match")).unwrap();
    assert_eq!(mm.header("prefer"), Some("respond-async"));
    let k = reqs.iter().find(|r| r.path.contains("$davinci-data-export")).unwrap();
    assert!(String::from_utf8_lossy(&k.body).contains("hl7.fhir.us.davinci-pdex#payertopayer"));
}
