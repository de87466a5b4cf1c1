//! Other servers' ways (issue 7): SMART Backend Services with discovery and 5-minute-style tokens,
//! open servers, `Prefer: handling=lenient`, extra headers, and `check`.

use std::collections::HashSet;
use std::time::Duration;

use oneup_bulk::job::JwtAlgorithm;
use oneup_bulk::sandbox::{JwtClient, RetryAfterStyle, SandboxConfig};

use crate::harness::*;

const EXPORT: &str = "  level: system\n  types: [Patient, Coverage]\n";

/// A sandbox that registered `jwks` for `backend-client`, with 1 s tokens so a run renews them, and a
/// job file that signs with `pem` (written owner-only beside it); no token_url: SMART discovery.
async fn backend_services(jwks: &str, pem: &str, alg: &str) -> (Env, String) {
    let env = Env::new(SandboxConfig {
        jwt_clients: vec![JwtClient { client_id: "backend-client".into(), jwks: serde_json::from_str(jwks).unwrap() }],
        token_ttl: Duration::from_secs(1),
        polls_before_ready: 25,
        retry_after: RetryAfterStyle::None,
        ..Default::default()
    })
    .await;
    let key = env.dir.path().join("backend.pem");
    std::fs::write(&key, pem).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let yaml = format!(
        "name: t\naccess: bulk-data\nfhir_base: {}\nauth:\n  client_id: backend-client\n  method: private-key-jwt\n  private_key_file: backend.pem\n  key_id: test-key\n  algorithm: {alg}\nexport:\n{EXPORT}poll:\n  min_interval: 10ms\n  max_interval: 100ms\ndownload:\n  dir: {}\n",
        env.sandbox.fhir_base(),
        env.out().display()
    );
    (env, yaml)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smart_backend_services_with_discovery_and_short_tokens() {
    for (alg, name) in [(JwtAlgorithm::Rs384, "RS384"), (JwtAlgorithm::Es384, "ES384")] {
        let (pem, jwks) = oneup_bulk::jwt::generate(alg, "test-key").unwrap();
        let (env, yaml) = backend_services(&jwks, &pem, name).await;
        let out = env.run(&env.job_from(&yaml)).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(out.record.totals.resources > 0);
        let reqs = env.sandbox.requests();
        assert!(reqs.iter().any(|r| r.path == "/fhir/.well-known/smart-configuration"), "{name}: discovery");
        let token_requests = reqs.iter().filter(|r| r.path == "/auth/token").count();
        assert!(token_requests >= 2, "{name}: short tokens renewed with fresh assertions ({token_requests})");
        // The sandbox verified each one itself (signature, kid, claims, jti) and accepted it.
        let seen = env.sandbox.client_assertions();
        assert_eq!(seen.len(), token_requests, "{name}");
        for a in &seen {
            assert_eq!(a.refused, None, "{name}: {:?}", a.claims);
            assert_eq!(a.header["alg"], name);
            assert_eq!(a.header["kid"], "test-key");
        }
        let jtis: HashSet<&str> = seen.iter().map(|a| a.claims["jti"].as_str().unwrap()).collect();
        assert_eq!(jtis.len(), seen.len(), "{name}: every jti unique");
        let form = String::from_utf8_lossy(&reqs.iter().find(|r| r.path == "/auth/token").unwrap().body).to_string();
        assert!(
            form.contains("client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"),
            "{form}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_assertion_signed_with_an_unregistered_key_is_refused_with_exit_3() {
    for (alg, name) in [(JwtAlgorithm::Rs384, "RS384"), (JwtAlgorithm::Es384, "ES384")] {
        let (_, registered) = oneup_bulk::jwt::generate(alg, "test-key").unwrap();
        let (other_pem, _) = oneup_bulk::jwt::generate(alg, "test-key").unwrap();
        let (env, yaml) = backend_services(&registered, &other_pem, name).await;
        let path = env.write_job("t.yaml", &yaml);
        let o = run_bin(vec!["run".into(), "--no-progress".into(), path.display().to_string()]).await;
        let t = text(&o);
        assert_eq!(o.status.code(), Some(3), "{name}: {t}");
        let why = "client assertion refused: the signature does not verify with the registered key \"test-key\"";
        let want = format!("authorization refused by {}: HTTP 401 invalid_client: {why}", env.sandbox.token_url());
        assert_eq!(t.trim_end(), format!("error: job t: {want}"), "{name}");
        let seen = env.sandbox.client_assertions();
        assert_eq!(seen.len(), 1, "{name}: refused once, not retried");
        assert_eq!(seen[0].refused.as_deref(), Some(&why["client assertion refused: ".len()..]));
        assert_eq!(env.sandbox.kickoff_count(), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_none_for_open_servers() {
    let env = Env::new(SandboxConfig { open: true, ..Default::default() }).await;
    let yaml = format!(
        "name: t\naccess: bulk-data\nfhir_base: {}\nauth:\n  method: none\nexport:\n{EXPORT}poll:\n  min_interval: 10ms\n  max_interval: 50ms\ndownload:\n  dir: {}\n",
        env.sandbox.fhir_base(),
        env.out().display()
    );
    let out = env.run(&env.job_from(&yaml)).await.unwrap();
    assert!(out.record.totals.resources > 0);
    let reqs = env.sandbox.requests();
    assert!(reqs.iter().all(|r| r.path != "/auth/token" && r.authorization().is_none()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lenient_and_extra_headers() {
    let env = Env::default().await;
    let yaml = env.yaml("t", &format!("{EXPORT}  lenient: true\n"), "headers:\n  Epic-Client-ID: abc-123\n");
    env.run(&env.job_from(&yaml)).await.unwrap();
    let reqs = env.sandbox.requests();
    let kick = reqs.iter().find(|r| r.path.starts_with("/fhir/$export?")).unwrap();
    assert_eq!(kick.header("prefer"), Some("respond-async, handling=lenient"));
    for r in &reqs {
        let want = if r.path == "/auth/token" { None } else { Some("abc-123") };
        assert_eq!(r.header("epic-client-id"), want, "{}", r.path);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_is_a_dry_connection_test() {
    let env = Env::default().await;
    let path = env.write_job("c.yaml", &env.yaml("t", EXPORT, ""));
    let o = run_bin(vec!["check".into(), path.display().to_string()]).await;
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(t.contains("token: obtained (client-secret-post)"), "{t}");
    assert!(t.contains("export operations:") && t.contains("Group $export") && t.contains("system $export"), "{t}");
    assert!(t.contains("no export was started"), "{t}");
    assert_eq!(env.sandbox.kickoff_count(), 0);
    // A wrong secret is found by check, with exit 3.
    let wrong = env.write_job("w.yaml", &env.yaml("t", EXPORT, "").replace("${TEST_SECRET}", "nope"));
    let o = run_bin(vec!["check".into(), wrong.display().to_string()]).await;
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paged_manifests_are_followed_and_kept() {
    let env = Env::new(SandboxConfig { manifest_page_size: Some(2), ..Default::default() }).await;
    let job = env.job("  level: system\n  types: [Patient, Coverage, ExplanationOfBenefit, Encounter, Observation]\n  allow_partial_manifests: true\n");
    let out = env.run(&job).await.unwrap();
    let outputs = out.record.files.iter().filter(|f| f.kind == oneup_bulk::record::FileKind::Output).count();
    assert_eq!(outputs, 5, "files from all three pages");
    assert!(out.run_dir.join("manifest.json").exists());
    assert!(out.run_dir.join("manifest.002.json").exists() && out.run_dir.join("manifest.003.json").exists());
    assert!(!out.run_dir.join("manifest.004.json").exists());
    let kick = env.sandbox.requests().into_iter().find(|r| r.path.starts_with("/fhir/$export?")).unwrap();
    assert!(kick.path.contains("allowPartialManifests=true"), "{}", kick.path);
    assert_run_matches_server(&env, &out).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_falls_back_to_the_capability_statement() {
    let env = Env::new(SandboxConfig { smart_configuration: false, ..Default::default() }).await;
    let yaml = env.yaml("t", EXPORT, "").replace(&format!("  token_url: {}\n", env.sandbox.token_url()), "");
    assert!(!yaml.contains("token_url"));
    let out = env.run(&env.job_from(&yaml)).await.unwrap();
    assert!(out.record.totals.resources > 0);
    let paths: Vec<String> = env.sandbox.requests().iter().map(|r| r.path.clone()).collect();
    let i = paths.iter().position(|p| p == "/fhir/.well-known/smart-configuration").expect("tried SMART first");
    let j = paths.iter().position(|p| p == "/fhir/metadata").expect("then the CapabilityStatement");
    assert!(i < j);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keygen_writes_an_owner_only_key_and_a_jwks() {
    let d = tempfile::tempdir().unwrap();
    let prefix = d.path().join("keys/backend");
    let o = run_bin(vec![
        "keygen".into(),
        "--algorithm".into(),
        "es384".into(),
        "--kid".into(),
        "k1".into(),
        "--out".into(),
        prefix.display().to_string(),
    ])
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let key = d.path().join("keys/backend.pem");
    assert_eq!(mode(&key), 0o600);
    let jwks: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.path().join("keys/backend.jwks.json")).unwrap()).unwrap();
    assert_eq!(jwks["keys"][0]["kid"], "k1");
    assert_eq!(jwks["keys"][0]["crv"], "P-384");
    assert!(jwks["keys"][0].get("d").is_none(), "no private part in the JWKS");
    oneup_bulk::jwt::SigningKey::from_pem(&std::fs::read_to_string(&key).unwrap(), JwtAlgorithm::Es384).unwrap();
    // Never overwrites a key.
    let again = run_bin(vec!["keygen".into(), "--out".into(), prefix.display().to_string()]).await;
    assert_eq!(again.status.code(), Some(2));
}
